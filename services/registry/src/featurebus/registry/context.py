"""What the registry's use cases share: settings, tables, the bus, the object store, the query services, the cipher.

The composition root (:func:`featurebus.registry.main.build_app`) makes one :class:`Ctx` of the
real adapters; unit tests make one of in-memory twins (``tests/registry_twins.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.fernet import Fernet
from fastapi import Request

from featurebus.common.events import Event
from featurebus.common.objectstore import ObjectStore
from featurebus.registry.config import RegistrySettings
from featurebus.registry.execution_history import ExecutionHistory
from featurebus.registry.query_services import QueryServices
from featurebus.registry.tables import Tables

__all__ = ["Ctx", "Publisher", "ctx"]

log = logging.getLogger("featurebus.registry")


class Publisher(Protocol):
    """What use cases need of the bus (:class:`featurebus.common.kafka.Bus` in production)."""

    async def publish(self, event: Event, key: str | None = None) -> None: ...


@dataclass
class Ctx:
    settings: RegistrySettings
    tables: Tables
    bus: Publisher
    store: ObjectStore
    queries: QueryServices  # inference's embed and the indexer's search, called directly
    cipher: Fernet
    history: ExecutionHistory = field(default_factory=ExecutionHistory)  # retrievers' kept executions
    _later: set[asyncio.Task[None]] = field(default_factory=set)

    def later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``work`` after the answer (bookkeeping a caller need not wait for); its failure is
        logged as ``what``."""

        async def logged() -> None:
            try:
                await work
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.create_task(logged())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def settle(self) -> None:
        """Wait for the work :meth:`later` started (tests; the app's shutdown)."""
        while self._later:
            await asyncio.gather(*self._later)


def ctx(request: Request) -> Ctx:
    """The FastAPI dependency: the app's Ctx."""
    return request.app.state.ctx  # type: ignore[no-any-return]
