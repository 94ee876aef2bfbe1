"""RecentReads: the hot tables' answers kept for a while, never hiding this process's own writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from featurebus.registry.records import Namespace
from featurebus.registry.tables import AnyOf, InMemoryTable, RecentReads, Tables

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Counted(InMemoryTable[Namespace]):
    """The twin, counting the reads that reach it; ``hold`` keeps a read waiting until set."""

    def __init__(self) -> None:
        super().__init__(Namespace)
        self.reads = 0
        self.hold: asyncio.Event | None = None

    async def find_one(self, **where: Any) -> Namespace | None:
        self.reads += 1
        found = await super().find_one(**where)
        if self.hold is not None:
            await self.hold.wait()
        return found

    async def get(self, id: str) -> Namespace | None:
        self.reads += 1
        return await super().get(id)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def namespace(name: str = "docs") -> Namespace:
    return Namespace(id="ns_1", org_id="org_1", namespace_name=name, created_at=T0)


async def recent() -> tuple[RecentReads[Namespace], Counted, Clock]:
    inner, clock = Counted(), Clock()
    table = RecentReads(inner, ttl_s=1.0, clock=clock)
    await table.insert(namespace())
    return table, inner, clock


async def test_a_read_repeated_within_the_ttl_is_answered_from_memory_and_read_again_after_it() -> None:
    table, inner, clock = await recent()
    first = await table.find_one(id="ns_1", org_id="org_1")
    assert await table.find_one(org_id="org_1", id="ns_1") == first  # the same filter in another order
    assert inner.reads == 1
    clock.now += 1.01
    assert await table.find_one(id="ns_1", org_id="org_1") == first and inner.reads == 2
    await table.get("ns_1")
    await table.get("ns_1")
    assert inner.reads == 3  # get is kept apart from find_one


async def test_every_kind_of_write_is_seen_by_the_next_read_at_once() -> None:
    table, _, _ = await recent()
    assert (await table.get("ns_1")).namespace_name == "docs"  # type: ignore[union-attr]
    assert await table.update("ns_1", {"namespace_name": "renamed"})
    assert (await table.get("ns_1")).namespace_name == "renamed"  # type: ignore[union-attr]
    await table.save(namespace("saved"))
    assert (await table.get("ns_1")).namespace_name == "saved"  # type: ignore[union-attr]
    assert [n.id for n in await table.find(org_id="org_1")] == ["ns_1"]
    assert await table.delete("ns_1")
    assert await table.get("ns_1") is None and await table.find(org_id="org_1") == []
    await table.insert(namespace("again"))
    assert [n.namespace_name for n in await table.find(org_id="org_1")] == ["again"]


async def test_a_read_that_a_write_overtook_is_not_kept() -> None:
    table, inner, _ = await recent()
    inner.hold = asyncio.Event()
    reading = asyncio.create_task(table.find_one(id="ns_1"))
    await asyncio.sleep(0)  # the read has the record as it was, and waits
    inner.hold.set()
    await table.update("ns_1", {"namespace_name": "renamed"})
    assert (await reading).namespace_name == "docs"  # type: ignore[union-attr]  (it began before the write)
    assert (await table.find_one(id="ns_1")).namespace_name == "renamed"  # type: ignore[union-attr]


async def test_answers_are_copies_a_caller_may_change() -> None:
    table, _, _ = await recent()
    got = await table.get("ns_1")
    assert got is not None
    got.namespace_name = "changed by a caller"
    assert (await table.get("ns_1")).namespace_name == "docs"  # type: ignore[union-attr]


async def test_a_filter_that_cannot_be_a_key_is_read_each_time() -> None:
    table, inner, _ = await recent()
    assert await table.find_one(id=AnyOf(["ns_1", "ns_2"])) is not None
    assert await table.find_one(id=AnyOf(["ns_1", "ns_2"])) is not None
    assert inner.reads == 1  # AnyOf's values are kept as a tuple
    assert await table.find_one(id="ns_1", extra={"a": 1}) is None
    assert await table.find_one(id="ns_1", extra={"a": 1}) is None
    assert inner.reads == 3  # a dict value: not kept


def test_the_registry_keeps_only_the_hot_tables_and_a_ttl_of_0_keeps_none() -> None:
    tables = Tables.in_memory()
    assert tables.reading_recent(0) is tables
    kept = tables.reading_recent(1.0)
    hot = {"organizations", "api_keys", "namespaces", "plugins", "collections", "retrievers"}
    assert {name for name, table in vars(kept).items() if isinstance(table, RecentReads)} == hot
    assert kept.batches is tables.batches  # counters and the rest are read each time
