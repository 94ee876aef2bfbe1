"""Composition root of the scanner service."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from featurebus.common import telemetry
from featurebus.common.kafka import Bus
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

    async def start(self) -> None:
        await until_ready("kafka", self.bus.ensure_topics)
        await self.bus.broker.start()

    async def stop(self) -> None:
        await self.bus.broker.stop()
        await self.store.close()


def build(
    settings: ScannerSettings | None = None, *, bus: Bus | None = None, store: ObjectStore | None = None
) -> ScannerService:
    settings = settings or ScannerSettings()
    bus = bus or Bus(settings, client_id="scanner")
    store = store or ObjectStore(settings)
    register(bus, store)
    return ScannerService(settings, bus, store)


async def _run(settings: ScannerSettings) -> None:
    service = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    log.info("scanner ready")
    await stop.wait()
    await service.stop()


def main() -> None:
    settings = ScannerSettings()
    telemetry.configure("scanner", settings.log_level, settings.trace_to_log)
    asyncio.run(_run(settings))
