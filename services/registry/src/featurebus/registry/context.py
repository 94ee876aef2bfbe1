"""What the registry's use cases share: settings, tables, the bus, the object store, the query services, the cipher.

The composition root (:func:`featurebus.registry.main.build_app`) makes one :class:`Ctx` of the
real adapters; unit tests make one of in-memory twins (``tests/registry_twins.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cryptography.fernet import Fernet
from fastapi import Request

from featurebus.common.events import Event
from featurebus.common.objectstore import ObjectStore
from featurebus.registry.config import RegistrySettings
from featurebus.registry.query_services import QueryServices
from featurebus.registry.tables import Tables

__all__ = ["Ctx", "Publisher", "ctx"]


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


def ctx(request: Request) -> Ctx:
    """The FastAPI dependency: the app's Ctx."""
    return request.app.state.ctx  # type: ignore[no-any-return]
