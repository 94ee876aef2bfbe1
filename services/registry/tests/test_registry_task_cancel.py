"""Cancelling a task (``DELETE /v1/tasks/{task_id}``) on the twins: CANCELED at once, ``batch.cancelled``
published, counts that still reconcile whatever frames arrive later, idempotence, refusals and tenancy."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from registry_twins import ADMIN, ORG, Twins, limited_to, twins
from test_registry_batches import Interleaving, a_batch, events, handle, indexed

from featurebus.common import ids
from featurebus.common.events import BatchCancelled, BatchPlanned
from featurebus.registry.batch_outcome import CANCELED
from featurebus.registry.errors import Conflict, NotFound
from featurebus.registry.records import Batch
from featurebus.registry.usecases import tasks


async def stored(t: Twins, batch_id: str = "btch_1") -> Batch:
    batch = await t.tables.batches.get(batch_id)
    assert batch is not None
    return batch


def reconciles(b: Batch) -> bool:
    return b.rows_in == b.rows_written + b.rows_failed + b.rows_cancelled


async def test_a_running_task_is_cancelled_at_once_and_its_unrun_rows_are_counted() -> None:
    t = twins()
    await t.namespace("docs")
    await a_batch(t)
    plan, f1, f2, _ = events()  # 3 frames of 9 rows; f1 writes 4 of 4, f2 1 of 3
    await handle(t, plan)
    await handle(t, f1)
    cancelled = await tasks.cancel_task(t.c, ADMIN, "task_1")
    assert (cancelled.status, cancelled.rows_written, cancelled.rows_cancelled) == (CANCELED, 4, 5)
    assert cancelled.cancelled_at is not None and cancelled.completed_at == cancelled.cancelled_at
    assert reconciles(cancelled) and cancelled == await stored(t)
    [(event, key)] = t.bus.published
    assert isinstance(event, BatchCancelled) and key == "btch_1"
    assert (event.org_id, event.namespace_id, event.batch_id, event.task_id) == (ORG, "ns_docs", "btch_1", "task_1")

    await handle(t, f2)  # a frame that was running when the task was cancelled finishes
    late = await stored(t)
    assert (late.status, late.rows_written, late.rows_failed, late.rows_cancelled) == (CANCELED, 5, 2, 2)
    assert reconciles(late) and late.completed_at == cancelled.completed_at
    await handle(t, f2)  # replayed
    assert await stored(t) == late


async def test_cancelling_again_changes_nothing_and_publishes_the_same_event_again() -> None:
    t = twins()
    await t.namespace("docs")
    await a_batch(t)
    first = await tasks.cancel_task(t.c, ADMIN, "task_1")
    again = await tasks.cancel_task(t.c, ADMIN, "task_1")
    assert again == first == await stored(t)
    one, two = t.bus.events(BatchCancelled)
    # The same event id: a consumer that dedups by event sees one cancellation (and a set of ids
    # changes nothing anyway); publishing again repairs a first publish that failed.
    assert one.model_dump(exclude={"occurred_at"}) == two.model_dump(exclude={"occurred_at"})
    assert one.event_id == ids.deterministic_id("evt", "btch_1", "cancelled")


async def test_a_task_cancelled_before_its_plan_counts_the_plans_rows_as_cancelled() -> None:
    t = twins()
    await t.namespace("docs")
    await a_batch(t)
    cancelled = await tasks.cancel_task(t.c, ADMIN, "task_1")
    assert (cancelled.status, cancelled.rows_in, cancelled.rows_cancelled) == (CANCELED, 0, 0)
    # The dispatcher still reports the totals of a cancelled trigger (without writing frames).
    await handle(t, BatchPlanned(batch_id="btch_1", namespace_id="ns_docs", frames_total=3, rows_in=9))
    planned = await stored(t)
    assert (planned.status, planned.rows_in, planned.rows_cancelled, planned.frames_done) == (CANCELED, 9, 9, 0)


@pytest.mark.parametrize("status", ["COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"])
async def test_a_finished_task_is_a_conflict_with_a_hint(status: str) -> None:
    t = twins()
    await t.namespace("docs")
    await t.tables.batches.insert(
        Batch(
            id="btch_1",
            org_id=ORG,
            namespace_id="ns_docs",
            bucket_id="bkt",
            collection_ids=["col_1"],
            task_id="task_1",
            status=status,
        )
    )
    with pytest.raises(Conflict) as refused:
        await tasks.cancel_task(t.c, ADMIN, "task_1")
    assert refused.value.detail == f"task task_1 (batch btch_1) already ended {status}: there is nothing to cancel"
    assert refused.value.hint is not None and "/v1/namespaces/ns_docs/buckets/bkt/batches/btch_1/retry" in (
        refused.value.hint
    )
    assert (await stored(t)).status == status and t.bus.published == []


async def test_an_unknown_or_another_tenants_task_is_not_found() -> None:
    t = twins()
    await t.namespace("docs")
    other = await t.namespace("other")
    await a_batch(t)
    for who, task_id in (
        (ADMIN, "task_nope"),
        (limited_to(other.id), "task_1"),
        (dataclasses.replace(ADMIN, org_id="org_2"), "task_1"),
    ):
        with pytest.raises(NotFound, match=f"task {task_id!r} not found"):
            await tasks.cancel_task(t.c, who, task_id)
    assert (await stored(t)).status == "PENDING" and t.bus.published == []
    assert (await tasks.cancel_task(t.c, limited_to("ns_docs"), "task_1")).status == CANCELED


@pytest.mark.parametrize("seed", range(30))
async def test_a_cancel_racing_the_last_frames_either_wins_or_finds_the_task_finished(seed: int) -> None:
    t = twins()
    await t.namespace("docs")
    await a_batch(t)
    rng = random.Random(seed)
    tables = dataclasses.replace(
        t.tables,
        batches=Interleaving(t.tables.batches, rng),
        frame_results=Interleaving(t.tables.frame_results, rng),
    )
    t = dataclasses.replace(t, c=dataclasses.replace(t.c, tables=tables))
    plan, *frames = events()
    await handle(t, plan)

    async def cancel() -> Batch | Conflict:
        try:
            return await tasks.cancel_task(t.c, ADMIN, "task_1")
        except Conflict as exc:
            return exc

    *_, outcome = await asyncio.gather(*(handle(t, f) for f in frames), cancel())
    final = await stored(t)
    assert final.frames_done == 3 and reconciles(final)
    if isinstance(outcome, Conflict):
        assert final.status == "COMPLETED_WITH_ERRORS" and final.cancelled_at is None
        assert t.bus.events(BatchCancelled) == []
    else:
        assert final.status == CANCELED and final.rows_cancelled == 0  # every frame had already run
        assert len(t.bus.events(BatchCancelled)) == 1


async def test_a_frame_for_a_cancelled_batch_that_wrote_nothing_still_reconciles() -> None:
    t = twins()
    await t.namespace("docs")
    await a_batch(t)
    await handle(t, BatchPlanned(batch_id="btch_1", namespace_id="ns_docs", frames_total=2, rows_in=4))
    await tasks.cancel_task(t.c, ADMIN, "task_1")
    await handle(t, indexed("btch_1", "f1", 2, 0))  # both rows failed in the plugin
    batch = await stored(t)
    assert (batch.status, batch.rows_failed, batch.rows_cancelled) == (CANCELED, 2, 2) and reconciles(batch)
