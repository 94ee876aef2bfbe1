"""text_embed: 384-d sentence embeddings with all-MiniLM-L6-v2 (module-level manifest style)."""

feature_extractor_name = "text_embed"
version = "1.0.0"
description = "Sentence embeddings of text blobs with all-MiniLM-L6-v2 (384-d, cosine)"
category = "text"
supported_input_types = ["text"]
dependencies = ["sentence-transformers"]

# One Qdrant vector index per entry; these exact keys are required.
features = [
    {
        "feature_type": "embedding",
        "feature_name": "text_embed_v1_embedding",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    },
]

output_schema = {
    "text_embed_v1_embedding": {"type": "array", "items": {"type": "number"}},
    "token_count": {"type": "integer"},
}

compute_profile = {
    "resource_type": "cpu",
    "batch_size": 64,
    "max_concurrency": 1,
}
