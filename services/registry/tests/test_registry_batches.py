"""Batches on the twins: starting one (REST, retry, batch.requested), its refusals, its bookkeeping
from batch.planned and batch.indexed (replays and any arrival order give the same counts, also when
events are handled at once), its failed documents, its task, and tenant isolation."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from typing import Any

import pytest
from registry_collection_samples import bucket, plugin
from registry_twins import ADMIN, ORG, Twins, limited_to, twins

from featurebus.common import ids
from featurebus.common.events import (
    BatchIndexed,
    BatchPlanned,
    BatchRequested,
    BatchTriggered,
    Event,
    ReasonCode,
    RowFailure,
)
from featurebus.registry.errors import Conflict, Invalid, NotFound
from featurebus.registry.records import Batch, Collection
from featurebus.registry.routes.batches import BatchView, FailedDocumentView
from featurebus.registry.routes.tasks import TaskView
from featurebus.registry.usecases import batches, collections, tasks
from featurebus.registry.usecases.collections import Extractor

BKT = "bkt_docs_articles"


async def docs(**plugin_state: Any) -> tuple[Twins, Collection]:
    """Namespace docs, bucket articles of 3 objects, and a collection of it with a ready plugin."""
    t = twins()
    ns = await t.namespace("docs")
    await bucket(t, ns)
    await plugin(t, ns, params={"model": "small", "batch": 8})
    col = await collections.create_collection(
        t.c, ADMIN, "docs", "articles", [Extractor("text_embed", "1.0.0", {"model": "large"})], bucket_ids=[BKT]
    )
    if plugin_state:
        await plugin(t, ns, **plugin_state)
    t.bus.published.clear()
    return t, col


def triggered(t: Twins) -> list[BatchTriggered]:
    return t.bus.events(BatchTriggered)


async def test_a_trigger_records_the_batch_and_hands_the_pipeline_each_extractor() -> None:
    t, col = await docs()
    batch = await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert (batch.status, batch.namespace_id, batch.collection_ids) == ("PENDING", "ns_docs", [col.id])
    assert batch.task_id == ids.deterministic_id("task", batch.id)
    assert await t.tables.batches.get(batch.id) is not None
    [(event, key)] = t.bus.published
    assert isinstance(event, BatchTriggered) and key == BKT
    assert (event.batch_id, event.bucket_id, event.object_ids, event.expected_objects) == (batch.id, BKT, None, 3)
    [target] = event.collections
    [ref] = target.feature_extractors
    assert target.collection_id == col.id
    assert (ref.plugin_id, ref.archive_uri) == ("text_embed_1_0_0", "s3://plugins/text_embed_1_0_0.tar.gz")
    assert ref.parameters == {"model": "large", "batch": 8}  # the collection's over the plugin's defaults
    assert [f.feature_name for f in ref.features] == ["embedding"]


@pytest.mark.parametrize(
    ("state", "detail", "hint"),
    [
        (
            {"scan_status": "failed"},
            "plugin text_embed_1_0_0 has not passed its scan (failed)",
            "check GET .../plugins/text_embed_1_0_0/status",
        ),
        (
            {"batch_enabled": False},
            "plugin text_embed_1_0_0 is not deployed for batch processing",
            "POST .../plugins/text_embed_1_0_0/deploy?deployment_type=batch_only",
        ),
    ],
)
async def test_a_plugin_no_longer_ready_refuses_the_batch(state: dict[str, Any], detail: str, hint: str) -> None:
    t, col = await docs(**state)
    with pytest.raises(Conflict) as refused:
        await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert (refused.value.detail, refused.value.hint) == (detail, hint)
    assert await t.tables.batches.find() == [] and t.bus.published == []


async def test_each_refusal_of_a_trigger_has_its_kind_and_hint() -> None:
    t, col = await docs()
    ns = await t.tables.namespaces.get("ns_docs")
    assert ns is not None
    await bucket(t, ns, "other")
    with pytest.raises(NotFound, match="bucket 'bkt_nope' not found in namespace 'docs'"):
        await batches.trigger_batch(t.c, ADMIN, "docs", "bkt_nope", [col.id])
    with pytest.raises(NotFound, match="collection 'col_nope' not found in this namespace"):
        await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id, "col_nope"])
    with pytest.raises(Invalid) as wrong_source:
        await batches.trigger_batch(t.c, ADMIN, "docs", "bkt_docs_other", [col.id])
    assert wrong_source.value.detail == f"collection {col.id} does not use bucket bkt_docs_other as its source"
    assert wrong_source.value.hint == f"its source buckets are ['{BKT}']"
    await t.tables.plugins.delete("ns_docs/text_embed_1_0_0")
    with pytest.raises(Conflict) as gone:
        await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert (gone.value.detail, gone.value.hint) == (
        "plugin text_embed_1_0_0 no longer exists",
        "upload it again or delete the collection",
    )
    assert await t.tables.batches.find() == [] and t.bus.published == []


def requested(**changes: Any) -> BatchRequested:
    fields = {"event_id": "evt_1", "org_id": ORG, "namespace_id": "ns_docs", "bucket_id": BKT} | changes
    return BatchRequested(collection_ids=fields.pop("collection_ids", []), **fields)


async def test_a_replayed_batch_request_starts_one_batch_and_triggers_it_again() -> None:
    t, col = await docs()
    first = await batches.start_requested(t.c, requested(collection_ids=[col.id]))
    again = await batches.start_requested(t.c, requested(collection_ids=[col.id]))
    assert first.id == again.id == ids.deterministic_id("btch", "evt_1")
    assert [b.id for b in await t.tables.batches.find()] == [first.id]
    assert [e.batch_id for e in triggered(t)] == [first.id, first.id]  # the pipeline is idempotent per batch
    named = await batches.start_requested(
        t.c, requested(event_id="evt_2", batch_id="btch_mine", collection_ids=[col.id])
    )
    assert named.id == "btch_mine" and named.task_id == ids.deterministic_id("task", "btch_mine")


async def test_a_bad_batch_request_is_a_domain_error_for_the_dlq() -> None:
    t, col = await docs()
    with pytest.raises(NotFound, match=r"batch\.requested: namespace 'ns_docs' of org 'org_2' does not exist"):
        await batches.start_requested(t.c, requested(org_id="org_2", collection_ids=[col.id]))
    with pytest.raises(NotFound, match=r"batch\.requested: bucket 'bkt_x' is not in namespace 'ns_docs'"):
        await batches.start_requested(t.c, requested(bucket_id="bkt_x", collection_ids=[col.id]))
    with pytest.raises(NotFound, match="collection 'col_x' not found in this namespace"):
        await batches.start_requested(t.c, requested(collection_ids=["col_x"]))
    assert t.bus.published == []


# ----------------------------------------------------------------------------- bookkeeping


def indexed(batch_id: str, frame: str, rows: int, written: int, collection: str = "col_1") -> BatchIndexed:
    failures = [
        RowFailure(document_id=f"{frame}-{i}", object_id=f"obj_{frame}_{i}", reason=ReasonCode.NULL_OUTPUT, message="m")
        for i in range(rows - written)
    ]
    return BatchIndexed(
        org_id=ORG,
        namespace_id="ns_docs",
        batch_id=batch_id,
        frame_id=frame,
        collection_id=collection,
        plugin_id="text_embed_1_0_0",
        rows_in=rows,
        rows_embedded=rows,
        rows_written=written,
        failures=failures,
    )


async def a_batch(t: Twins, batch_id: str = "btch_1") -> Batch:
    batch = Batch(
        id=batch_id, org_id=ORG, namespace_id="ns_docs", bucket_id=BKT, collection_ids=["col_1"], task_id="task_1"
    )
    await t.tables.batches.insert(batch)
    return batch


async def handle(t: Twins, event: Event) -> None:
    if isinstance(event, BatchPlanned):
        await batches.record_planned(t.c, event)
    else:
        assert isinstance(event, BatchIndexed)
        await batches.record_indexed(t.c, event)


def counts(batch: Batch | None) -> tuple[Any, ...]:
    assert batch is not None
    return (
        batch.status,
        batch.frames_total,
        batch.frames_done,
        batch.rows_in,
        batch.rows_embedded,
        batch.rows_written,
        batch.rows_failed,
        batch.failure_summary,
    )


FINAL = ("COMPLETED_WITH_ERRORS", 3, 3, 9, 9, 7, 2, {"null_output": 2})


def per_collection(batch: Batch | None) -> list[tuple[str, int, int, int, int]]:
    """The batch's counts per collection, after checking that they add up to its totals."""
    assert batch is not None and batch.collections is not None
    rows = [(n.collection_id, n.rows_in, n.rows_embedded, n.rows_written, n.rows_failed) for n in batch.collections]
    assert [r[0] for r in rows[: len(batch.collection_ids)]] == batch.collection_ids  # one each, in order
    sums = tuple(sum(r[i] for r in rows) for i in (2, 3, 4))
    assert sums == (batch.rows_embedded, batch.rows_written, batch.rows_failed)
    if batch.planned and batch.frames_done == batch.frames_total:
        assert sum(r[1] for r in rows) == batch.rows_in
    return rows


def events() -> list[Event]:
    return [
        BatchPlanned(batch_id="btch_1", namespace_id="ns_docs", frames_total=3, rows_in=9),
        indexed("btch_1", "f1", 4, 4),
        indexed("btch_1", "f2", 3, 1),
        indexed("btch_1", "f3", 2, 2),
    ]


async def test_frames_before_the_plan_and_replayed_frames_count_once() -> None:
    t = twins()
    await a_batch(t)
    plan, f1, f2, f3 = events()
    await handle(t, f1)
    assert (await t.tables.batches.get("btch_1")).status == "IN_PROGRESS"  # type: ignore[union-attr]
    await handle(t, plan)
    await handle(t, f1)  # replayed
    assert counts(await t.tables.batches.get("btch_1"))[:3] == ("IN_PROGRESS", 3, 1)
    for event in (f2, f2, f3, plan, f3):
        await handle(t, event)
    batch = await t.tables.batches.get("btch_1")
    assert counts(batch) == FINAL and batch is not None and batch.completed_at is not None
    completed_at = batch.completed_at
    await handle(t, f2)  # a replay after the end changes nothing, not even when it ended
    assert (await t.tables.batches.get("btch_1")).completed_at == completed_at  # type: ignore[union-attr]
    assert len(await t.tables.frame_results.find(batch_id="btch_1")) == 3


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
async def test_any_arrival_order_gives_the_same_counts(order: tuple[int, ...]) -> None:
    t = twins()
    await a_batch(t)
    every = events()
    for i in order:
        await handle(t, every[i])
    batch = await t.tables.batches.get("btch_1")
    assert counts(batch) == FINAL and per_collection(batch) == [("col_1", 9, 9, 7, 2)]


class Interleaving:
    """A table whose every call lets other tasks run first, so that concurrent handlers interleave."""

    def __init__(self, table: Any, rng: random.Random) -> None:
        self._table, self._rng = table, rng

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._table, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            for _ in range(self._rng.randrange(4)):
                await asyncio.sleep(0)
            return await method(*args, **kwargs)

        return call


@pytest.mark.parametrize("seed", range(30))
async def test_events_handled_at_once_lose_no_frame_and_no_plan(seed: int) -> None:
    t = twins()
    await a_batch(t)
    rng = random.Random(seed)
    tables = dataclasses.replace(
        t.tables,
        batches=Interleaving(t.tables.batches, rng),
        frame_results=Interleaving(t.tables.frame_results, rng),
    )
    t = dataclasses.replace(t, c=dataclasses.replace(t.c, tables=tables))
    every = events() * 2  # and each one replayed
    rng.shuffle(every)
    await asyncio.gather(*(handle(t, e) for e in every))
    batch = await t.tables.batches.get("btch_1")
    assert counts(batch) == FINAL and batch is not None and batch.planned and batch.completed_at is not None
    assert per_collection(batch) == [("col_1", 9, 9, 7, 2)]


async def test_no_row_written_fails_the_batch_and_a_plan_that_failed_fails_it_at_once() -> None:
    t = twins()
    await a_batch(t, "btch_1")
    await handle(t, BatchPlanned(batch_id="btch_1", namespace_id="ns_docs", frames_total=1, rows_in=2))
    await handle(t, indexed("btch_1", "f1", 2, 0))
    assert counts(await t.tables.batches.get("btch_1"))[0] == "FAILED"
    await a_batch(t, "btch_2")
    await handle(t, BatchPlanned(batch_id="btch_2", namespace_id="ns_docs", frames_total=0, rows_in=0, error="empty"))
    batch = await t.tables.batches.get("btch_2")
    assert batch is not None and (batch.status, batch.error) == ("FAILED", "empty") and batch.completed_at


async def test_a_plan_for_an_unknown_batch_is_ignored() -> None:
    t = twins()
    await handle(t, BatchPlanned(batch_id="btch_nope", namespace_id="ns_docs", frames_total=1, rows_in=1))
    await handle(t, indexed("btch_nope", "f1", 1, 1))  # recorded; counted if the batch ever shows up
    assert await t.tables.batches.find() == []
    assert len(await t.tables.frame_results.find(batch_id="btch_nope")) == 1


async def two_collections() -> tuple[Twins, Batch]:
    """A batch of the bucket's 3 objects into two collections, triggered (nothing counted yet)."""
    t, col = await docs()
    other = await collections.create_collection(
        t.c, ADMIN, "docs", "summaries", [Extractor("text_embed", "1.0.0", {})], bucket_ids=[BKT]
    )
    return t, await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id, other.id])


async def test_a_batch_of_two_collections_counts_each_and_its_totals_are_their_sums() -> None:
    t, batch = await two_collections()
    a, b = batch.collection_ids
    assert [(n.collection_id, n.rows_in, n.rows_written) for n in BatchView.of(batch).collections or []] == [
        (a, 0, 0),
        (b, 0, 0),
    ]  # the trigger's answer: one entry per collection before any frame
    a1, a2, b1 = indexed(batch.id, "a1", 2, 2, a), indexed(batch.id, "a2", 1, 0, a), indexed(batch.id, "b1", 3, 2, b)
    await handle(t, BatchPlanned(batch_id=batch.id, namespace_id="ns_docs", frames_total=3, rows_in=6))
    await handle(t, a1)
    await handle(t, b1)
    running = await batches.get_batch(t.c, ADMIN, "docs", BKT, batch.id)
    assert running.status == "IN_PROGRESS"
    assert per_collection(running) == [(a, 2, 2, 2, 0), (b, 3, 3, 2, 1)]  # rows_in: of the frames reported
    await handle(t, a2)
    done = await batches.get_batch(t.c, ADMIN, "docs", BKT, batch.id)
    assert (done.status, done.rows_in, done.rows_written, done.rows_failed) == ("COMPLETED_WITH_ERRORS", 6, 4, 2)
    assert per_collection(done) == [(a, 3, 3, 2, 1), (b, 3, 3, 2, 1)]
    rows, _ = await batches.failed_documents(t.c, ADMIN, "docs", BKT, batch.id, 0, 100)
    assert [r.collection_id for r in rows] == [a, b]  # the failed rows tell the same per collection
    view = BatchView.of(done).model_dump(mode="json")
    assert view["collections"] == [
        {"collection_id": a, "rows_in": 3, "rows_embedded": 3, "rows_written": 2, "rows_failed": 1},
        {"collection_id": b, "rows_in": 3, "rows_embedded": 3, "rows_written": 2, "rows_failed": 1},
    ]
    task = await tasks.get_task(t.c, ADMIN, batch.task_id)
    assert TaskView.of(task).model_dump(mode="json")["collections"] == view["collections"]


async def test_a_replayed_frame_result_is_counted_once_in_its_collection() -> None:
    t, batch = await two_collections()
    a, b = batch.collection_ids
    await handle(t, BatchPlanned(batch_id=batch.id, namespace_id="ns_docs", frames_total=2, rows_in=6))
    first = indexed(batch.id, "a1", 3, 2, a)
    await handle(t, first)
    once = per_collection(await t.tables.batches.get(batch.id))
    await handle(t, first)  # redelivered as it was
    await handle(t, first.model_copy(update={"event_id": "evt_again"}))  # the same frame, published again
    assert per_collection(await t.tables.batches.get(batch.id)) == once == [(a, 3, 3, 2, 1), (b, 0, 0, 0, 0)]
    await handle(t, indexed(batch.id, "b1", 3, 3, b))
    await handle(t, indexed(batch.id, "b1", 3, 3, b))
    done = await t.tables.batches.get(batch.id)
    assert counts(done)[:7] == ("COMPLETED_WITH_ERRORS", 2, 2, 6, 6, 5, 1)
    assert per_collection(done) == [(a, 3, 3, 2, 1), (b, 3, 3, 3, 0)]


async def test_a_batch_stored_without_counts_per_collection_gets_them_at_its_next_refresh() -> None:
    t = twins()
    await a_batch(t)  # as a registry before this field stored it: collections None
    for event in events()[:3]:
        await handle(t, event)
    await t.tables.batches.update("btch_1", {"collections": None})
    assert BatchView.of(await t.tables.batches.get("btch_1")).collections is None  # type: ignore[arg-type]
    await handle(t, events()[1])  # a replay
    assert per_collection(await t.tables.batches.get("btch_1")) == [("col_1", 7, 7, 5, 2)]


# ----------------------------------------------------------------------------- reading, retry, tasks


async def finished(t: Twins, col: Collection) -> Batch:
    batch = await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    for event in events():
        await handle(t, event.model_copy(update={"batch_id": batch.id}))
    return batch


async def test_failed_documents_page_through_every_frame_and_a_retry_runs_their_objects() -> None:
    t, col = await docs()
    batch = await finished(t, col)
    assert (await batches.get_batch(t.c, ADMIN, "docs", BKT, batch.id)).status == "COMPLETED_WITH_ERRORS"
    rows, total = await batches.failed_documents(t.c, ADMIN, "docs", BKT, batch.id, 0, 100)
    assert total == 2 and [(r.collection_id, r.failure.document_id) for r in rows] == [
        ("col_1", "f2-0"),
        ("col_1", "f2-1"),
    ]
    assert await batches.failed_documents(t.c, ADMIN, "docs", BKT, batch.id, 1, 1) == (rows[1:], 2)
    retry = await batches.retry_batch(t.c, ADMIN, "docs", BKT, batch.id)
    assert retry.id != batch.id and retry.object_ids == ["obj_f2_0", "obj_f2_1"]
    last = triggered(t)[-1]
    assert (last.batch_id, last.object_ids, last.expected_objects) == (retry.id, ["obj_f2_0", "obj_f2_1"], None)
    with pytest.raises(Conflict, match=f"batch {retry.id} has no failed documents to retry"):
        await batches.retry_batch(t.c, ADMIN, "docs", BKT, retry.id)


async def test_a_batch_is_found_only_in_its_own_bucket() -> None:
    t, col = await docs()
    batch = await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    ns = await t.tables.namespaces.get("ns_docs")
    assert ns is not None
    await bucket(t, ns, "other")
    for attempt in (
        batches.get_batch(t.c, ADMIN, "docs", "bkt_docs_other", batch.id),
        batches.failed_documents(t.c, ADMIN, "docs", "bkt_docs_other", batch.id, 0, 10),
        batches.retry_batch(t.c, ADMIN, "docs", "bkt_docs_other", batch.id),
    ):
        with pytest.raises(NotFound, match=f"batch {batch.id!r} not found in bucket 'bkt_docs_other'"):
            await attempt


async def test_a_task_is_its_batch_for_the_keys_that_may_see_it() -> None:
    t, col = await docs()
    batch = await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert (await tasks.get_task(t.c, ADMIN, batch.task_id)).id == batch.id
    assert (await tasks.get_task(t.c, limited_to("ns_docs"), batch.task_id)).id == batch.id
    other = await t.namespace("other")
    with pytest.raises(NotFound, match=f"task {batch.task_id!r} not found"):
        await tasks.get_task(t.c, limited_to(other.id), batch.task_id)
    with pytest.raises(NotFound, match=f"task {batch.task_id!r} not found"):
        await tasks.get_task(t.c, dataclasses.replace(ADMIN, org_id="org_2"), batch.task_id)


async def test_a_key_of_another_namespace_reaches_no_batch() -> None:
    t, col = await docs()
    batch = await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    other = await t.namespace("other")
    outsider = limited_to(other.id)
    for attempt in (
        batches.trigger_batch(t.c, outsider, "docs", BKT, [col.id]),
        batches.get_batch(t.c, outsider, "docs", BKT, batch.id),
        batches.failed_documents(t.c, outsider, "docs", BKT, batch.id, 0, 10),
        batches.retry_batch(t.c, outsider, "docs", BKT, batch.id),
    ):
        with pytest.raises(NotFound, match="namespace 'docs' not found"):
            await attempt
    with pytest.raises(NotFound, match="bucket 'bkt_docs_articles' not found in namespace 'other'"):
        await batches.get_batch(t.c, outsider, "other", BKT, batch.id)
    await bucket(t, other)
    with pytest.raises(NotFound, match=f"collection {col.id!r} not found in this namespace"):
        await batches.trigger_batch(t.c, outsider, "other", "bkt_other_articles", [col.id])
    assert len(triggered(t)) == 1


def test_the_answers_keep_the_guides_field_names() -> None:
    batch = Batch(id="btch_1", org_id="o", namespace_id="ns", bucket_id="bkt", collection_ids=["c"], task_id="task_1")
    assert list(BatchView.of(batch).model_dump(mode="json")) == [
        "batch_id",
        "task_id",
        "status",
        "bucket_id",
        "collection_ids",
        "rows_in",
        "rows_embedded",
        "rows_written",
        "rows_failed",
        "rows_cancelled",
        "frames_total",
        "frames_done",
        "failure_summary",
        "error",
        "object_ids",
        "created_at",
        "completed_at",
        "cancelled_at",
        "collections",
    ]
    assert TaskView.of(batch).model_dump(mode="json") | {"created_at": None} == {
        "task_id": "task_1",
        "task_type": "api_buckets_batches_process",  # Mixpeek's TaskType of a batch run
        "status": "PENDING",
        "batch_id": "btch_1",
        "bucket_id": "bkt",
        "namespace_id": batch.namespace_id,
        "created_at": None,
        "completed_at": None,
        "error": None,
        "rows_in": 0,
        "rows_written": 0,
        "rows_failed": 0,
        "rows_cancelled": 0,
        "collections": None,  # a record stored before them; a triggered batch has one entry per collection
    }
    failure = RowFailure(document_id="d", object_id="o", reason=ReasonCode.NULL_OUTPUT, message="m")
    assert FailedDocumentView.of(batches.FailedDocument("c", failure)).model_dump(mode="json") == {
        "collection_id": "c",
        **failure.model_dump(mode="json"),
    }
