"""Batches of a bucket: starting one (the REST trigger, a retry, ``batch.requested``), reading it,
and its bookkeeping from ``batch.planned`` and ``batch.indexed`` — idempotent per frame, in any order.

Every start resolves the collections' feature extractors (each plugin must still be ready), records
the batch and publishes ``batch.triggered``; the pipeline handles a re-published trigger
idempotently.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, NamedTuple

from featurebus.common import ids
from featurebus.common.events import (
    BatchCancelled,
    BatchIndexed,
    BatchPlanned,
    BatchRequested,
    BatchTriggered,
    CollectionTarget,
    PluginRef,
    RowFailure,
)
from featurebus.registry.auth import Principal
from featurebus.registry.batch_outcome import (
    CANCELED,
    TERMINAL,
    rows_cancelled,
    status_of,
    tally,
    tally_by_collection,
)
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, Invalid, NotFound
from featurebus.registry.plugin_readiness import plugin_ref
from featurebus.registry.plugin_resolution import resolve_plugin
from featurebus.registry.records import Batch, Bucket, CollectionCounts, FrameResult, Namespace, now
from featurebus.registry.tables import Duplicate
from featurebus.registry.usecases.buckets import namespace_bucket

__all__ = [
    "FailedDocument",
    "cancel_batch",
    "failed_documents",
    "get_batch",
    "record_indexed",
    "record_planned",
    "retry_batch",
    "start_requested",
    "trigger_batch",
]

log = logging.getLogger("featurebus.registry.batches")

# What a batch's counts and status are computed from, besides its frames (see _refresh).
_PLAN = ("planned", "frames_total", "rows_in", "error")
# Each failed compare-and-set means another writer got in first; this many in a row is not a race.
_MAX_ATTEMPTS = 100


class FailedDocument(NamedTuple):
    collection_id: str
    failure: RowFailure


# ----------------------------------------------------------------------------- REST


async def trigger_batch(c: Ctx, who: Principal, ns: str, bucket_id: str, collection_ids: list[str]) -> Batch:
    namespace, bucket = await namespace_bucket(c, who, ns, bucket_id)
    return await _start(c, namespace, bucket, collection_ids)


async def get_batch(c: Ctx, who: Principal, ns: str, bucket_id: str, batch_id: str) -> Batch:
    return (await _batch(c, who, ns, bucket_id, batch_id))[2]


async def failed_documents(
    c: Ctx, who: Principal, ns: str, bucket_id: str, batch_id: str, offset: int, limit: int
) -> tuple[list[FailedDocument], int]:
    """One page of the batch's failed rows, in frame order, and how many there are."""
    await _batch(c, who, ns, bucket_id, batch_id)
    rows = [FailedDocument(f.collection_id, failure) for f in await _frames(c, batch_id) for failure in f.failures]
    return rows[offset : offset + limit], len(rows)


async def retry_batch(c: Ctx, who: Principal, ns: str, bucket_id: str, batch_id: str) -> Batch:
    """A new batch over the objects that had a failed row, into the same collections."""
    namespace, bucket, batch = await _batch(c, who, ns, bucket_id, batch_id)
    failed = sorted({failure.object_id for f in await _frames(c, batch_id) for failure in f.failures})
    if not failed:
        raise Conflict(f"batch {batch_id} has no failed documents to retry")
    return await _start(c, namespace, bucket, batch.collection_ids, failed)


async def _batch(c: Ctx, who: Principal, ns: str, bucket_id: str, batch_id: str) -> tuple[Namespace, Bucket, Batch]:
    namespace, bucket = await namespace_bucket(c, who, ns, bucket_id)
    batch = await c.tables.batches.find_one(id=batch_id, bucket_id=bucket.id)
    if batch is None:
        raise NotFound(f"batch {batch_id!r} not found in bucket {bucket_id!r}")
    return namespace, bucket, batch


async def _frames(c: Ctx, batch_id: str) -> list[FrameResult]:
    return await c.tables.frame_results.find(batch_id=batch_id)  # ordered by id: by frame


async def cancel_batch(c: Ctx, batch: Batch) -> Batch:
    """Stop a batch: CANCELED at once, then ``batch.cancelled`` so that no further frame is run.

    The dispatcher plans no more frames, inference acknowledges the frames still queued without
    running them, the indexer writes nothing more; a frame already running may finish and is
    counted. Idempotent: a cancelled batch is answered as it is and the event published again, so
    a retry repairs a publish that failed after the status was stored. A finished batch is a
    Conflict.
    """
    for _ in range(_MAX_ATTEMPTS):
        if batch.cancelled_at is None:
            if batch.status in TERMINAL:
                raise Conflict(
                    f"task {batch.task_id} (batch {batch.id}) already ended {batch.status}: there is nothing to cancel",
                    "only a PENDING or IN_PROGRESS task can be cancelled; to run the failed documents again, "
                    f"POST /v1/namespaces/{batch.namespace_id}/buckets/{batch.bucket_id}/batches/{batch.id}/retry",
                )
            moment = now()
            marked = {"cancelled_at": moment, "status": CANCELED, "completed_at": moment}
            # Compare-and-set on the status as read: a refresh that finishes the batch meanwhile
            # wins (and the retry answers 409), and a refresh computed before this fails its own.
            if not await c.tables.batches.update(batch.id, marked, status=batch.status, cancelled_at=None):
                batch = await c.tables.batches.get(batch.id) or batch
                continue
            log.info("batch=%s task=%s cancelled (was %s)", batch.id, batch.task_id, batch.status)
        event = BatchCancelled(
            event_id=ids.deterministic_id("evt", batch.id, "cancelled"),
            org_id=batch.org_id,
            namespace_id=batch.namespace_id,
            batch_id=batch.id,
            task_id=batch.task_id,
        )
        await c.bus.publish(event, key=batch.id)
        await _refresh(c, batch.id)
        return await c.tables.batches.get(batch.id) or batch
    raise TimeoutError(f"batch {batch.id}: {_MAX_ATTEMPTS} concurrent updates in a row")


# ----------------------------------------------------------------------------- Kafka


async def start_requested(c: Ctx, event: BatchRequested) -> Batch:
    """``batch.requested``: the REST trigger's path; a refusal goes to the DLQ with its reason.

    Without a ``batch_id``, one derived from the event id: a replayed request starts no second batch.
    """
    namespace = await c.tables.namespaces.find_one(id=event.namespace_id, org_id=event.org_id)
    if namespace is None:
        raise NotFound(f"batch.requested: namespace {event.namespace_id!r} of org {event.org_id!r} does not exist")
    bucket = await c.tables.buckets.find_one(id=event.bucket_id, namespace_id=namespace.id)
    if bucket is None:
        raise NotFound(f"batch.requested: bucket {event.bucket_id!r} is not in namespace {namespace.id!r}")
    batch_id = event.batch_id or ids.deterministic_id("btch", event.event_id)
    return await _start(c, namespace, bucket, event.collection_ids, event.object_ids, batch_id)


async def record_planned(c: Ctx, event: BatchPlanned) -> None:
    """``batch.planned``: how many frames and rows the batch became (or why it cannot run)."""
    plan = {"planned": True, "frames_total": event.frames_total, "rows_in": event.rows_in, "error": event.error}
    if not await c.tables.batches.update(event.batch_id, plan):
        log.warning("batch.planned for unknown batch %s ignored", event.batch_id)
        return
    await _refresh(c, event.batch_id)


async def record_indexed(c: Ctx, event: BatchIndexed) -> None:
    """``batch.indexed``: one frame's outcome, recorded once per (batch, frame) whatever the replays."""
    result = FrameResult(
        id=f"{event.batch_id}/{event.frame_id}",
        batch_id=event.batch_id,
        frame_id=event.frame_id,
        collection_id=event.collection_id,
        rows_in=event.rows_in,
        rows_embedded=event.rows_embedded,
        rows_written=event.rows_written,
        failures=event.failures,
    )
    # A replayed frame is already recorded and counted once; its refresh changes nothing, or
    # finishes one that a crash interrupted after the insert.
    with contextlib.suppress(Duplicate):
        await c.tables.frame_results.insert(result)
    await _refresh(c, event.batch_id)


# ----------------------------------------------------------------------------- shared


async def _start(
    c: Ctx,
    namespace: Namespace,
    bucket: Bucket,
    collection_ids: list[str],
    object_ids: list[str] | None = None,
    batch_id: str | None = None,
) -> Batch:
    """Record the batch and publish BatchTriggered; with a known ``batch_id`` nothing new is recorded."""
    targets = [await _target(c, namespace, bucket, cid) for cid in collection_ids]
    batch_id = batch_id or ids.new_id("btch")
    batch = Batch(
        id=batch_id,
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        bucket_id=bucket.id,
        collection_ids=collection_ids,
        task_id=ids.deterministic_id("task", batch_id),
        object_ids=object_ids,
        collections=[CollectionCounts(collection_id=cid) for cid in collection_ids],
    )
    try:
        await c.tables.batches.insert(batch)
    except Duplicate:
        batch = await c.tables.batches.get(batch_id) or batch
    await c.bus.publish(
        BatchTriggered(
            org_id=namespace.org_id,
            namespace_id=namespace.id,
            bucket_id=bucket.id,
            batch_id=batch_id,
            collections=targets,
            object_ids=object_ids,
            expected_objects=None if object_ids else bucket.object_count,
        ),
        key=bucket.id,
    )
    return batch


async def _target(c: Ctx, namespace: Namespace, bucket: Bucket, collection_id: str) -> CollectionTarget:
    collection = await c.tables.collections.find_one(id=collection_id, namespace_id=namespace.id)
    if collection is None:
        raise NotFound(f"collection {collection_id!r} not found in this namespace")
    if bucket.id not in collection.bucket_ids:
        raise Invalid(
            f"collection {collection_id} does not use bucket {bucket.id} as its source",
            f"its source buckets are {collection.bucket_ids}",
        )
    refs = [await _extractor_ref(c, namespace, fe) for fe in collection.feature_extractors]
    return CollectionTarget(collection_id=collection_id, feature_extractors=refs)


async def _extractor_ref(c: Ctx, namespace: Namespace, extractor: dict[str, Any]) -> PluginRef:
    plugin = await resolve_plugin(c.tables, namespace, extractor["plugin_id"])
    if plugin is None:
        raise Conflict(f"plugin {extractor['plugin_id']} no longer exists", "upload it again or delete the collection")
    return plugin_ref(plugin, extractor.get("parameters"))


async def _refresh(c: Ctx, batch_id: str) -> None:
    """Recompute the batch's counts (in all and per collection) and status from its frame results
    (each frame counted once).

    Written by compare-and-set on what they were computed from — the plan, and ``frames_done`` and
    ``status`` as read — and recomputed when another writer got in first. Frame results are only ever added, so
    a write that passes counts at least the frames already counted: two events handled at once
    (``batch.planned`` and ``batch.indexed`` have consumer groups of their own) never leave the
    batch with fewer frames, or without its plan.
    """
    for _ in range(_MAX_ATTEMPTS):
        batch = await c.tables.batches.get(batch_id)
        if batch is None:
            return  # frames before their batch: counted when it is planned
        changes = _outcome(batch, await _frames(c, batch_id))
        if all(getattr(batch, name) == value for name, value in changes.items()):
            return
        read = {name: getattr(batch, name) for name in (*_PLAN, "frames_done", "status")}
        if await c.tables.batches.update(batch_id, changes, **read):
            if changes.get("completed_at"):
                _log_end(batch, changes)
            return
    # A TimeoutError is transient to the bus, which redelivers the event; the replay refreshes again.
    raise TimeoutError(f"batch {batch_id}: {_MAX_ATTEMPTS} concurrent refreshes in a row")


def _outcome(batch: Batch, frames: list[FrameResult]) -> dict[str, Any]:
    counts = tally((f.rows_in, f.rows_embedded, f.rows_written, f.failures) for f in frames)
    cancelled = batch.cancelled_at is not None
    status = status_of(
        planned=batch.planned,
        frames_total=batch.frames_total,
        rows_in=batch.rows_in,
        counts=counts,
        error=batch.error,
        cancelled=cancelled,
    )
    changes: dict[str, Any] = {
        "status": status,
        "frames_done": counts.frames_done,
        "rows_embedded": counts.rows_embedded,
        "rows_written": counts.rows_written,
        "rows_failed": counts.rows_failed,
        "rows_cancelled": rows_cancelled(cancelled=cancelled, rows_in=batch.rows_in, counts=counts),
        "failure_summary": counts.failure_summary,
        "collections": _per_collection(batch, frames),
    }
    if status in TERMINAL and batch.status not in TERMINAL:
        changes["completed_at"] = now()
    return changes


def _per_collection(batch: Batch, frames: list[FrameResult]) -> list[CollectionCounts]:
    """The batch's counts per collection, from the same frames as its totals (so they add up to them)."""
    per = tally_by_collection(
        batch.collection_ids,
        ((f.collection_id, f.rows_in, f.rows_embedded, f.rows_written, f.failures) for f in frames),
    )
    return [
        CollectionCounts(
            collection_id=cid,
            rows_in=n.rows_in,
            rows_embedded=n.rows_embedded,
            rows_written=n.rows_written,
            rows_failed=n.rows_failed,
        )
        for cid, n in per.items()
    ]


def _log_end(batch: Batch, changes: dict[str, Any]) -> None:
    status, summary = changes["status"], changes["failure_summary"]
    log.info(
        "batch=%s %s: in=%d written=%d failed=%d %s",
        batch.id,
        status,
        batch.rows_in,
        changes["rows_written"],
        changes["rows_failed"],
        summary or "",
    )
    if status != "COMPLETED":
        error = f"; {batch.error}" if batch.error else ""
        log.error("batch=%s ended %s: failures by reason %s%s", batch.id, status, summary, error)
