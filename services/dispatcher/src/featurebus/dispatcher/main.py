"""Composition root: the only place that builds adapters and opens connections.

``build(settings, ...)`` wires settings, object repository, object store and Bus; tests pass
in-memory adapters (and TestKafkaBroker the Bus). ``main()`` runs the service until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient

from featurebus.common import telemetry
from featurebus.common.cancellations import CancelledBatches
from featurebus.common.kafka import Bus
from featurebus.common.lifecycle import run_until_signalled
from featurebus.common.metrics import ProcessMetrics
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.dispatcher.batching import Dispatcher, FrameStore
from featurebus.dispatcher.config import DispatcherSettings
from featurebus.dispatcher.handlers import register
from featurebus.dispatcher.mongo_repository import MongoObjectRepository
from featurebus.dispatcher.repository import ObjectRepository

__all__ = ["DispatcherService", "build", "main"]

log = logging.getLogger("featurebus.dispatcher")


@dataclass
class DispatcherService:
    """A wired dispatcher: ``start()`` connects and subscribes, ``stop()`` drains and closes."""

    settings: DispatcherSettings
    bus: Bus
    dispatcher: Dispatcher
    store: FrameStore
    _mongo: AsyncMongoClient[Any] | None = None
    cancelled: CancelledBatches = field(default_factory=CancelledBatches)
    metrics: ProcessMetrics = field(init=False)  # consumer lag, DLQ depth and /metrics on FEATUREBUS_METRICS_PORT

    def __post_init__(self) -> None:
        self.metrics = ProcessMetrics(self.bus)

    async def start(self) -> None:
        await until_ready("kafka", self.bus.ensure_topics)
        await until_ready("the object store", self.store.ensure_bucket)
        await until_ready("the object repository (MongoDB)", self.dispatcher.repository.init)
        # Before any trigger is consumed: a batch cancelled while this process was down stays cancelled.
        await until_ready("the cancelled batches (batch.cancelled)", lambda: self.cancelled.catch_up(self.bus))
        await self.bus.broker.start()
        await self.metrics.start()
        log.info("dispatcher started (kafka=%s, topic prefix=%r)", self.settings.kafka_bootstrap, self.bus.prefix)

    async def stop(self) -> None:
        # Stopping the broker first lets in-flight handlers finish and commit before Mongo closes.
        await self.metrics.stop()
        await self.bus.broker.stop()
        if self._mongo is not None:
            await self._mongo.close()
        log.info("dispatcher stopped")


def build(
    settings: DispatcherSettings | None = None,
    *,
    repository: ObjectRepository | None = None,
    store: FrameStore | None = None,
    bus: Bus | None = None,
) -> DispatcherService:
    """Wire the dispatcher. Nothing connects until ``start()`` (pymongo's client is lazy)."""
    settings = settings or DispatcherSettings()
    mongo: AsyncMongoClient[Any] | None = None
    if repository is None:
        mongo = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
        repository = MongoObjectRepository(mongo[settings.dispatcher_db])
    store = store if store is not None else ObjectStore(settings)
    bus = bus if bus is not None else Bus(settings, client_id="dispatcher")
    dispatcher = Dispatcher(
        repository=repository,
        store=store,
        ingest_grace_s=settings.ingest_grace_s,
        write_concurrency=settings.frame_write_concurrency,
    )
    cancelled = CancelledBatches()
    register(bus, dispatcher, cancelled)
    return DispatcherService(
        settings=settings, bus=bus, dispatcher=dispatcher, store=store, _mongo=mongo, cancelled=cancelled
    )


def main() -> None:
    settings = DispatcherSettings()
    telemetry.configure("dispatcher", settings)
    asyncio.run(run_until_signalled(build(settings)))
