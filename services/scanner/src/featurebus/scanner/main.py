"""Composition root of the scanner service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from featurebus.common import telemetry
from featurebus.common.kafka import Bus
from featurebus.common.lifecycle import run_until_signalled
from featurebus.common.metrics import ProcessMetrics
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.scanner.config import ScannerSettings
from featurebus.scanner.handlers import register

__all__ = ["ScannerService", "build", "main"]

log = logging.getLogger("featurebus.scanner")


@dataclass
class ScannerService:
    settings: ScannerSettings
    bus: Bus
    store: ObjectStore
    metrics: ProcessMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ProcessMetrics(self.bus)

    async def start(self) -> None:
        await until_ready("kafka", self.bus.ensure_topics)
        await self.bus.broker.start()
        await self.metrics.start()
        log.info("scanner ready")

    async def stop(self) -> None:
        await self.metrics.stop()
        await self.bus.broker.stop()
        await self.store.close()


def build(
    settings: ScannerSettings | None = None, *, bus: Bus | None = None, store: ObjectStore | None = None
) -> ScannerService:
    settings = settings or ScannerSettings()
    bus = bus or Bus(settings, client_id="scanner")
    store = store or ObjectStore(settings)
    register(bus, store, settings.installable_packages())
    return ScannerService(settings, bus, store)


def main() -> None:
    settings = ScannerSettings()
    telemetry.configure("scanner", settings)
    asyncio.run(run_until_signalled(build(settings)))
