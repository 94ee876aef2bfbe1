"""Builtin batch services (``shared.inference.registry.get_batch_service``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from featurebus.sdk.batch import BaseBatchInferenceService

__all__ = ["MiniLMBatch", "get_batch_service"]


def _cfg(config: Any, name: str, default: str) -> str:
    if isinstance(config, dict):
        return str(config.get(name, default))
    return str(getattr(config, name, default) or default)


class MiniLMBatch(BaseBatchInferenceService):
    """all-MiniLM-L6-v2 (384-d, normalised): embeds ``text_column`` into ``output_column_name``."""

    model_id = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.text_column = _cfg(config, "text_column", "data")
        self.output_column = _cfg(config, "output_column_name", "embedding")
        self._model: Any = None

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_id, device="cpu")
        texts = batch[self.text_column].fillna("").astype(str).tolist()
        batch[self.output_column] = self._model.encode(texts, batch_size=64, normalize_embeddings=True).tolist()
        return batch


_SERVICES: dict[str, type[BaseBatchInferenceService]] = {
    "sentence-transformers/all-MiniLM-L6-v2": MiniLMBatch,
    "all-MiniLM-L6-v2": MiniLMBatch,
}


def get_batch_service(model_id: str) -> type[BaseBatchInferenceService]:
    try:
        return _SERVICES[model_id]
    except KeyError:
        raise KeyError(
            f"no builtin batch service {model_id!r} on this installation; available: {sorted(_SERVICES)}"
        ) from None
