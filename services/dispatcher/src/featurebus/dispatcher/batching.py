"""The dispatcher's use cases: store ingested objects; turn a batch trigger into frames.

No Kafka here: the handlers publish what these return. The adapters come in through small
ports (:class:`ObjectRepository`, :class:`FrameStore`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from featurebus.common import ids
from featurebus.common.events import BatchPlanned, BatchReady, BatchTriggered, ObjectsIngested
from featurebus.common.frames import to_parquet
from featurebus.common.kafka import TransientError
from featurebus.common.objectstore import sha256_hex
from featurebus.common.waiting import Waits
from featurebus.dispatcher.frame_planner import PlanError, PlannedFrame, plan_frames
from featurebus.dispatcher.object_rules import InvalidObjectsError, split_valid
from featurebus.dispatcher.repository import ObjectRepository

__all__ = ["BatchPlan", "Dispatcher", "FrameStore", "ObjectsNotYetStored"]

log = logging.getLogger("featurebus.dispatcher")


class FrameStore(Protocol):
    """The part of :class:`featurebus.common.objectstore.ObjectStore` the dispatcher uses."""

    async def ensure_bucket(self) -> None: ...
    async def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> str: ...


class ObjectsNotYetStored(TransientError):
    """The trigger names objects the ingest consumer may not have stored yet: retry shortly."""

    retry_after = 0.5  # this service's own ingest consumer is catching up: poll, don't back off


@dataclass
class BatchPlan:
    """What a trigger became: one BatchReady per frame (already written), then the totals."""

    ready: list[BatchReady]
    planned: BatchPlanned


@dataclass
class Dispatcher:
    repository: ObjectRepository
    store: FrameStore
    ingest_grace_s: float = 5.0
    write_concurrency: int = 8
    clock: Callable[[], float] = time.monotonic
    # Triggers that found their objects missing (see ingest_grace_s).
    _missing: Waits = field(default_factory=Waits)

    async def ingest(self, event: ObjectsIngested) -> int:
        """Store the valid objects; then raise InvalidObjectsError naming the invalid ones.

        Storing first means one bad object never loses the good ones of the same message; raising
        afterwards sends the message to the DLQ with the reasons, so the rejection is loud and
        the producer can fix and replay it (the valid objects re-store idempotently).
        """
        valid, rejected = split_valid(event.objects)
        stored = await self.repository.upsert(
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            bucket_id=event.bucket_id,
            objects=valid,
            ingested_at=event.occurred_at,
        )
        log.info("bucket=%s stored=%d rejected=%d", event.bucket_id, stored, len(rejected))
        if rejected:
            raise InvalidObjectsError(event.bucket_id, rejected)
        return stored

    async def plan(self, event: BatchTriggered) -> BatchPlan:
        """Snapshot the bucket, write every frame to the object store, and describe them.

        Idempotent: the same snapshot gives the same frame ids, keys and bytes, so a replay
        overwrites each frame with itself and republishes identical events.
        """
        objects = await self.repository.list_objects(event.bucket_id, event.object_ids)
        error = self._missing_objects_error(event, {o.object_id for o in objects})
        if error is not None:
            return BatchPlan([], self._planned(event, 0, 0, error))
        try:
            frames = plan_frames(event.batch_id, objects, event.collections)
        except PlanError as exc:
            log.error("batch=%s cannot be planned: %s", event.batch_id, exc)
            return BatchPlan([], self._planned(event, 0, 0, f"batch {event.batch_id}: {exc}"))
        ready = await self._write_frames(event, frames)
        rows_in = sum(r.row_count for r in ready)
        log.info(
            "batch=%s bucket=%s objects=%d frames=%d rows=%d",
            event.batch_id,
            event.bucket_id,
            len(objects),
            len(ready),
            rows_in,
        )
        return BatchPlan(ready, self._planned(event, len(ready), rows_in, None))

    async def count(self, event: BatchTriggered) -> BatchPlanned:
        """The totals of a batch cancelled before it was planned: its rows counted, no frame written.

        The registry counts these rows as cancelled. Objects still on their way through
        ``objects.ingested`` are not waited for: nothing will run anyway.
        """
        objects = await self.repository.list_objects(event.bucket_id, event.object_ids)
        try:
            frames = plan_frames(event.batch_id, objects, event.collections)
        except PlanError:
            frames = []
        log.info("batch=%s was cancelled before it was planned: %d frame(s) not written", event.batch_id, len(frames))
        return self._planned(event, len(frames), sum(len(f.rows) for f in frames), None)

    def _missing_objects_error(self, event: BatchTriggered, found: set[str]) -> str | None:
        """None when planning can go on; an error for BatchPlanned when it cannot.

        Raises ObjectsNotYetStored while within the grace period, because the ingest consumer
        may still be storing objects that the trigger was sent after.
        """
        wanted = set(event.object_ids) if event.object_ids is not None else None
        missing = sorted(wanted - found) if wanted is not None else []
        # The producer said how many objects the bucket holds: fewer stored means some are
        # still on their way through objects.ingested.
        short = wanted is None and event.expected_objects is not None and len(found) < event.expected_objects
        if found and not missing and not short:
            self._missing.done(event.event_id)
            return None
        waited = self._missing.waited(event.event_id, self.clock())
        if waited < self.ingest_grace_s:
            lacking = len(missing) or (event.expected_objects or 0) - len(found) or "all"
            raise ObjectsNotYetStored(
                f"batch {event.batch_id}: bucket {event.bucket_id} lacks {lacking} object(s) "
                f"after {waited:.1f}s; waiting up to {self.ingest_grace_s:.0f}s for the ingest consumer"
            )
        self._missing.done(event.event_id)
        if found and short:
            log.warning(
                "batch=%s bucket=%s: expected %d object(s), %d stored after %.0fs; going on with those",
                event.batch_id,
                event.bucket_id,
                event.expected_objects,
                len(found),
                waited,
            )
        if found and missing:
            log.warning(
                "batch=%s bucket=%s: %d requested object(s) do not exist and are skipped: %s",
                event.batch_id,
                event.bucket_id,
                len(missing),
                missing[:20],
            )
        if found:
            return None
        if wanted is not None:
            return (
                f"bucket {event.bucket_id} has none of the {len(wanted)} requested object(s) "
                f"(e.g. {missing[:3]}): they were never ingested or belong to another bucket"
            )
        return f"bucket {event.bucket_id} has no objects: add objects before triggering a batch"

    async def _write_frames(self, event: BatchTriggered, frames: list[PlannedFrame]) -> list[BatchReady]:
        limit = asyncio.Semaphore(self.write_concurrency)

        async def write(frame: PlannedFrame) -> BatchReady:
            data = to_parquet(frame.to_dataframe())
            async with limit:
                uri = await self.store.put_bytes(frame.key, data, "application/vnd.apache.parquet")
            return BatchReady(
                # Deterministic, so consumers can recognise a replayed trigger's events.
                event_id=ids.deterministic_id("evt", event.event_id, frame.frame_id),
                org_id=event.org_id,
                namespace_id=event.namespace_id,
                bucket_id=event.bucket_id,
                batch_id=event.batch_id,
                frame_id=frame.frame_id,
                frame_index=frame.frame_index,
                collection_id=frame.collection_id,
                plugin=frame.plugin,
                frame_uri=uri,
                frame_sha256=sha256_hex(data),
                row_count=len(frame.rows),
            )

        return list(await asyncio.gather(*(write(f) for f in frames)))

    @staticmethod
    def _planned(event: BatchTriggered, frames_total: int, rows_in: int, error: str | None) -> BatchPlanned:
        return BatchPlanned(
            event_id=ids.deterministic_id("evt", event.event_id, "planned"),
            batch_id=event.batch_id,
            namespace_id=event.namespace_id,
            frames_total=frames_total,
            rows_in=rows_in,
            error=error,
        )
