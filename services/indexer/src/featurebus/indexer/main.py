"""Composition root: the only place that builds adapters and opens connections.

``build(settings, ...)`` wires settings, the Qdrant client (server by URL, or local mode at a
path), the object store, the Bus and the internal search API; tests pass
``AsyncQdrantClient(":memory:")``, an in-memory object store and TestKafkaBroker, and call the
API's app through httpx's ASGITransport. ``main()`` runs the service until SIGTERM.

Qdrant local mode allows one process per path, so a process holds exactly one client.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi import FastAPI
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException

from featurebus.common import telemetry
from featurebus.common.internal_api import InternalServer
from featurebus.common.kafka import Bus
from featurebus.common.lifecycle import run_until_signalled
from featurebus.common.metrics import ProcessMetrics
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.indexer.config import IndexerSettings
from featurebus.indexer.handlers import register
from featurebus.indexer.indexing import VectorReader, VectorSetIndexer
from featurebus.indexer.qdrant_index import QdrantIndex
from featurebus.indexer.search_api import build_search_api

__all__ = ["IndexerService", "build", "main", "qdrant_client"]

log = logging.getLogger("featurebus.indexer")


@dataclass
class IndexerService:
    """A wired indexer: ``start()`` connects and subscribes, ``stop()`` drains and closes."""

    settings: IndexerSettings
    bus: Bus
    index: QdrantIndex
    indexer: VectorSetIndexer
    store: VectorReader
    api: FastAPI
    server: InternalServer
    metrics: ProcessMetrics = field(init=False)  # consumer lag and DLQ depth (/metrics is on the internal API)

    def __post_init__(self) -> None:
        self.metrics = ProcessMetrics(self.bus)

    async def start(self) -> None:
        # Searches first: they need only Qdrant, so they work while Kafka is still coming up.
        if self.settings.internal_token is None:
            log.error("FEATUREBUS_INTERNAL_TOKEN is not set: the search API refuses every request")
        await self.server.start()
        # No ensure_bucket here: the indexer only reads vector sets, and lifecycle and searches
        # must keep working while the object store is down.
        await until_ready("kafka", self.bus.ensure_topics)
        # Before any vectors are consumed: a batch cancelled while this process was down stays cancelled.
        await until_ready("the cancelled batches (batch.cancelled)", lambda: self.indexer.cancelled.catch_up(self.bus))
        await self.bus.broker.start()
        await self.metrics.start()
        log.info("indexer started (kafka=%s, topic prefix=%r)", self.settings.kafka_bootstrap, self.bus.prefix)

    async def stop(self) -> None:
        # Stop taking searches and consuming first, so that in-flight work finishes (and commits)
        # before Qdrant closes.
        await self.server.stop()
        await self.metrics.stop()
        await self.bus.broker.stop()
        await self.index.close()
        log.info("indexer stopped")


def qdrant_client(settings: IndexerSettings) -> AsyncQdrantClient:
    """A Qdrant server client when ``qdrant_url`` is set, else local mode on ``qdrant_path``."""
    if settings.qdrant_url:
        return AsyncQdrantClient(url=settings.qdrant_url, api_key=settings.qdrant_api_key)
    path = settings.resolved_qdrant_path()
    path.mkdir(parents=True, exist_ok=True)
    return AsyncQdrantClient(path=str(path))


def build(
    settings: IndexerSettings | None = None,
    *,
    qdrant: AsyncQdrantClient | None = None,
    store: VectorReader | None = None,
    bus: Bus | None = None,
) -> IndexerService:
    """Wire the indexer (local-mode Qdrant opens its path here; a server client connects lazily)."""
    settings = settings or IndexerSettings()
    index = QdrantIndex(qdrant if qdrant is not None else qdrant_client(settings), settings.upsert_batch_size)
    store = store if store is not None else ObjectStore(settings)
    bus = bus if bus is not None else Bus(settings, client_id="indexer", transient=(ResponseHandlingException,))
    indexer = VectorSetIndexer(index=index, store=store, missing_collection_grace_s=settings.missing_collection_grace_s)
    register(bus, index, indexer)
    api = build_search_api(index, settings.internal_token)
    server = InternalServer(api, settings.indexer_host, settings.indexer_port, "indexer", metrics=True)
    return IndexerService(settings=settings, bus=bus, index=index, indexer=indexer, store=store, api=api, server=server)


def main() -> None:
    settings = IndexerSettings()
    telemetry.configure("indexer", settings)
    asyncio.run(run_until_signalled(build(settings)))
