"""The indexer's settings (env prefix ``FEATUREBUS_``, shared blocks from CommonSettings)."""

from __future__ import annotations

from pathlib import Path

from featurebus.common.settings import CommonSettings

__all__ = ["IndexerSettings"]


class IndexerSettings(CommonSettings):
    # A Qdrant server (FEATUREBUS_QDRANT_URL); when unset, Qdrant runs in local mode inside this
    # process at ``qdrant_path`` (one process per path: run a single indexer in local mode).
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_path: Path | None = None  # default: data_dir / "qdrant"
    # How long vectors for a collection that does not exist (yet) are retried before their rows
    # fail: the collection's lifecycle event is consumed on another topic and may lag behind.
    missing_collection_grace_s: float = 60.0
    upsert_batch_size: int = 256

    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path if self.qdrant_path is not None else self.data_dir / "qdrant"
