from dataclasses import dataclass

import pandas as pd


@dataclass
class EmbedConfig:
    model_name: str = "all-MiniLM-L6-v2"
    encode_batch_size: int = 64


class TextEmbedProcessor:
    """Batch processor: one batched model call per frame."""

    def __init__(self, config: EmbedConfig, progress_actor=None):
        self.config = config
        self._model = None  # loaded on the first batch

    def _ensure_model_loaded(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.config.model_name, device="cpu")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self._ensure_model_loaded()
        # Custom plugins always read the 'data' column (raw text for text blobs).
        texts = batch["data"].fillna("").tolist()
        embeddings = self._model.encode(texts, batch_size=self.config.encode_batch_size, normalize_embeddings=True)
        batch["text_embed_v1_embedding"] = embeddings.tolist()
        batch["token_count"] = [len(t.split()) for t in texts]
        return batch
