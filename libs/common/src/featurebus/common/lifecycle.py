"""Running a service process: start it, wait for SIGTERM or SIGINT, stop it gracefully."""

from __future__ import annotations

import asyncio
import signal
from typing import Protocol

__all__ = ["Service", "run_until_signalled"]


class Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_signalled(service: Service) -> None:
    """Stopping lets the handler in hand finish and commit its offset before connections close."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await service.start()
        await stopping.wait()
    finally:
        await service.stop()
