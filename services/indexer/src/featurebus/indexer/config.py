"""The indexer's settings (env prefix ``FEATUREBUS_``, shared blocks from CommonSettings)."""

from __future__ import annotations

from pathlib import Path

from featurebus.common.settings import DEFAULT_INDEXER_PORT, CommonSettings

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
    # The internal search API (search_api.py) the registry's retriever executions call; loopback
    # by default, and every request needs FEATUREBUS_INTERNAL_TOKEN.
    indexer_host: str = "127.0.0.1"
    indexer_port: int = DEFAULT_INDEXER_PORT

    def resolved_qdrant_path(self) -> Path:
        return self.qdrant_path if self.qdrant_path is not None else self.data_dir / "qdrant"
