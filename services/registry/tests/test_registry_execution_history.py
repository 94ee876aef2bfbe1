"""A retriever's kept executions: bounded as before, for one insert per execution (one for all that
arrive while a write runs) and a count and one delete per tenth, never two prunes at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from featurebus.registry.execution_history import ExecutionHistory
from featurebus.registry.records import RetrieverExecution
from featurebus.registry.tables import InMemoryTable


class Counted(InMemoryTable[RetrieverExecution]):
    """The twin, counting its calls; ``page`` can be made to wait (a slow store)."""

    def __init__(self) -> None:
        super().__init__(RetrieverExecution)
        self.calls: dict[str, int] = {"insert": 0, "insert_many": 0, "page": 0, "delete": 0, "delete_many": 0}
        self.page_gate: asyncio.Event | None = None

    async def insert(self, record: RetrieverExecution) -> None:
        self.calls["insert"] += 1
        await super().insert(record)

    async def insert_many(self, records: Sequence[RetrieverExecution]) -> None:
        self.calls["insert_many"] += 1
        for record in records:
            await InMemoryTable.insert(self, record)

    async def page(self, offset: int, limit: int, **where: Any) -> tuple[list[RetrieverExecution], int]:
        self.calls["page"] += 1
        if self.page_gate is not None:
            await self.page_gate.wait()
        return await super().page(offset, limit, **where)

    async def delete(self, id: str) -> bool:
        self.calls["delete"] += 1
        return await super().delete(id)

    async def delete_many(self, ids: Sequence[str]) -> int:
        self.calls["delete_many"] += 1
        return await super().delete_many(ids)


def execution(n: int, retriever: str = "ret_1") -> RetrieverExecution:
    return RetrieverExecution(
        id=f"rex_{retriever}_{n:05d}",
        org_id="org_1",
        namespace_id="ns_1",
        retriever_id=retriever,
        inputs={"query": f"q{n}"},
        status="completed",
        execution_time_ms=1.0,
    )


async def kept(table: Counted, retriever: str = "ret_1") -> list[str]:
    return [e.id for e in await table.find(retriever_id=retriever)]


async def test_a_history_of_100_counts_every_tenth_execution_and_drops_the_oldest_in_one_delete() -> None:
    table, history = Counted(), ExecutionHistory()
    for n in range(250):
        await history.record(table, execution(n), keep=100)
        assert len(await kept(table)) <= 110  # the bound the history always had
    ids = await kept(table)
    assert len(ids) in range(100, 110) and ids[-1] == "rex_ret_1_00249"
    assert ids == [execution(n).id for n in range(250 - len(ids), 250)]  # the newest, none missing
    # One insert each; a count (one page) on the first and then every tenth; a delete per prune.
    assert table.calls["insert_many"] == 250 and table.calls["insert"] == 0
    assert table.calls["page"] == 1 + 24 and table.calls["delete"] == 0
    assert table.calls["delete_many"] == 15  # the counts that found more than 100: at the 101st, 111th, ..., 241st


async def test_a_small_history_is_pruned_at_every_execution_past_it() -> None:
    table, history = Counted(), ExecutionHistory()
    for n in range(7):
        await history.record(table, execution(n), keep=3)
        assert len(await kept(table)) == min(n + 1, 3)
    assert await kept(table) == [execution(n).id for n in (4, 5, 6)]


async def test_executions_recorded_while_a_write_runs_go_together_in_the_next_one() -> None:
    table, history = Counted(), ExecutionHistory()
    for n in range(3):
        await history.record(table, execution(n), keep=1)  # keep 1: every execution is a count's turn
    assert await kept(table) == [execution(2).id]
    assert (table.calls["insert_many"], table.calls["page"]) == (3, 3)
    table.page_gate = asyncio.Event()  # the next count waits: a slow store under load
    first = asyncio.create_task(history.record(table, execution(3), keep=1))
    await asyncio.sleep(0)
    others = [asyncio.create_task(history.record(table, execution(n), keep=1)) for n in range(4, 20)]
    await asyncio.sleep(0.01)
    assert all(task.done() for task in others)  # in line behind the write that runs: nothing to wait for
    assert (table.calls["insert_many"], table.calls["page"]) == (4, 4)
    table.page_gate.set()
    await first
    # The 16 in one insert, then one count (and one page of the oldest past 1) and one delete for them.
    assert (table.calls["insert_many"], table.calls["page"], table.calls["delete_many"]) == (5, 6, 4)
    assert await kept(table) == [execution(19).id]


async def test_a_failed_write_raises_to_its_caller_and_the_next_record_writes_what_waited() -> None:
    table, history = Counted(), ExecutionHistory()
    table.page_gate = asyncio.Event()
    broken = asyncio.create_task(history.record(table, execution(0), keep=10))
    await asyncio.sleep(0)
    await history.record(table, execution(1), keep=10)  # waits in line
    # The gate opens on a store that refuses the next insert: the one waiting in line.

    async def refuse(records: Sequence[RetrieverExecution]) -> None:
        raise ConnectionError("the store went away")

    table.insert_many = refuse  # type: ignore[method-assign]
    table.page_gate.set()
    try:
        await broken
    except ConnectionError:
        pass
    else:
        raise AssertionError("the write's failure reached no caller")
    del table.insert_many
    await history.record(table, execution(2), keep=10)
    assert await kept(table) == [execution(0).id, execution(2).id]  # the refused one is lost, not the next


async def test_retrievers_are_counted_apart_and_a_forgotten_one_counts_at_once_again() -> None:
    table, history = Counted(), ExecutionHistory()
    for n in range(30):
        await history.record(table, execution(n, "ret_a" if n % 2 else "ret_b"), keep=10)
    assert len(await kept(table, "ret_a")) == 10 and len(await kept(table, "ret_b")) == 10
    history.forget("ret_a")
    pages = table.calls["page"]
    await history.record(table, execution(99, "ret_a"), keep=10)
    assert table.calls["page"] == pages + 1 and len(await kept(table, "ret_a")) == 10
