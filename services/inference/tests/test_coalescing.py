"""The coalescer: a lone item leaves at once, items arriving meanwhile leave together, errors reach each."""

from __future__ import annotations

import asyncio

import pytest

from featurebus.inference.coalescing import Coalescer


class Runner:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


async def test_items_of_one_key_wait_for_a_slot_and_then_leave_together() -> None:
    coalescer: Coalescer[int, int] = Coalescer()
    run = Runner()
    run.gate.clear()
    calls = [asyncio.create_task(coalescer.submit("k", i, run, slots=2, max_batch=100)) for i in range(6)]
    await asyncio.sleep(0.01)
    assert run.batches == [[0], [1]] and coalescer.pending("k") == 4  # two slots busy, four waiting
    run.gate.set()
    assert await asyncio.gather(*calls) == [0, 10, 20, 30, 40, 50]
    assert run.batches == [[0], [1], [2, 3, 4, 5]] and coalescer.pending("k") == 0


async def test_keys_do_not_wait_for_each_other() -> None:
    coalescer: Coalescer[int, int] = Coalescer()
    slow, fast = Runner(), Runner()
    slow.gate.clear()
    stuck = asyncio.create_task(coalescer.submit("slow", 1, slow, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    assert await asyncio.wait_for(coalescer.submit("fast", 2, fast, slots=1, max_batch=10), 1) == 20
    slow.gate.set()
    assert await stuck == 10


async def test_a_failed_call_fails_every_item_it_carried_and_the_next_batch_still_runs() -> None:
    coalescer: Coalescer[int, int] = Coalescer()
    run = Runner()
    run.gate.clear()
    run.fail = ConnectionError("the actor died")
    first = asyncio.create_task(coalescer.submit("k", 1, run, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    later = asyncio.create_task(coalescer.submit("k", 2, run, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    run.gate.set()
    with pytest.raises(ConnectionError):
        await first
    with pytest.raises(ConnectionError):  # it was in flight when the actor died too
        await later
    run.fail = None
    assert await coalescer.submit("k", 3, run, slots=1, max_batch=10) == 30


async def test_a_caller_that_gave_up_is_not_sent() -> None:
    coalescer: Coalescer[int, int] = Coalescer()
    run = Runner()
    run.gate.clear()
    first = asyncio.create_task(coalescer.submit("k", 1, run, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(coalescer.submit("k", 2, run, slots=1, max_batch=10), 0.01)
    kept = asyncio.create_task(coalescer.submit("k", 3, run, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    run.gate.set()
    assert (await first, await kept) == (10, 30)
    assert run.batches == [[1], [3]]


async def test_an_answer_of_the_wrong_length_fails_the_batch_loudly() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:1]

    coalescer: Coalescer[int, int] = Coalescer()
    blocker = Runner()
    blocker.gate.clear()
    first = asyncio.create_task(coalescer.submit("k", 0, blocker, slots=1, max_batch=10))
    await asyncio.sleep(0.01)
    pair = [asyncio.create_task(coalescer.submit("k", i, short, slots=1, max_batch=10)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    blocker.gate.set()
    assert await first == 0
    for call in pair:
        with pytest.raises(RuntimeError, match="2 items was answered with 1"):
            await call
