"""In-memory twins for unit tests of the registry's use cases: tables, object store, bus, keys.

The tables twin is checked against MongoDB by ``test_registry_tables_contract.py`` and the object
store twin against S3 by ``libs/common/tests/test_objectstore_twin.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet

from featurebus.common.events import Event
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.registry.answers import Answers
from featurebus.registry.config import RegistrySettings
from featurebus.registry.context import Ctx
from featurebus.registry.key_rules import Principal
from featurebus.registry.records import Namespace
from featurebus.registry.tables import Tables

ORG = "org_1"
ADMIN = Principal(ORG, "key_admin", admin=True, namespaces=None)
MEMBER = Principal(ORG, "key_member", admin=False, namespaces=None)


def limited_to(*namespace_ids: str) -> Principal:
    return Principal(ORG, "key_limited", admin=False, namespaces=list(namespace_ids))


@dataclass
class RecordingBus:
    """The bus as use cases see it: every published event, with its key, in order."""

    published: list[tuple[Event, str | None]] = field(default_factory=list)

    async def publish(self, event: Event, key: str | None = None) -> None:
        self.published.append((event, key))

    def events(self, kind: type[Event]) -> list[Any]:
        return [e for e, _ in self.published if isinstance(e, kind)]


@dataclass
class Twins:
    c: Ctx
    tables: Tables
    store: MemoryObjectStore
    bus: RecordingBus

    async def namespace(self, name: str = "docs", org: str = ORG) -> Namespace:
        ns = Namespace(id=f"ns_{name}", org_id=org, namespace_name=name)
        await self.tables.namespaces.insert(ns)
        return ns


def twins(**settings: Any) -> Twins:
    tables, store, bus = Tables.in_memory(), MemoryObjectStore(), RecordingBus()
    c = Ctx(
        RegistrySettings(**settings),
        tables,
        bus,
        store,  # type: ignore[arg-type]  # ObjectStore's interface, checked against S3 by its own test
        Answers(),
        Fernet(Fernet.generate_key()),
    )
    return Twins(c, tables, store, bus)
