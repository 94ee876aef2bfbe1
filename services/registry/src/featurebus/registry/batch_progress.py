"""Batch bookkeeping from batch.planned and batch.indexed: idempotent per frame, any order."""

from __future__ import annotations

import logging

from pymongo.errors import DuplicateKeyError

from featurebus.common.events import BatchIndexed, BatchPlanned
from featurebus.registry.batch_status import status_of, tally
from featurebus.registry.documents import BatchDoc, FrameResult, now

__all__ = ["record_indexed", "record_planned", "refresh"]

log = logging.getLogger("featurebus.registry.batch_progress")
TERMINAL = {"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED"}


async def record_planned(event: BatchPlanned) -> None:
    batch = await BatchDoc.get(event.batch_id)
    if batch is None:
        log.warning("batch.planned for unknown batch %s ignored", event.batch_id)
        return
    batch.planned, batch.frames_total, batch.rows_in, batch.error = True, event.frames_total, event.rows_in, event.error
    await refresh(batch)


async def record_indexed(event: BatchIndexed) -> None:
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
    try:
        await result.insert()
    except DuplicateKeyError:
        return  # a replayed frame changes nothing
    batch = await BatchDoc.get(event.batch_id)
    if batch is not None:
        await refresh(batch)


async def refresh(batch: BatchDoc) -> None:
    """Recompute counts and status from the frame results (each frame counted once)."""
    frames = await FrameResult.find(FrameResult.batch_id == batch.id).to_list()
    counts = tally((f.rows_in, f.rows_embedded, f.rows_written, f.failures) for f in frames)
    status = status_of(
        planned=batch.planned, frames_total=batch.frames_total, rows_in=batch.rows_in, counts=counts, error=batch.error
    )
    batch.frames_done, batch.rows_embedded, batch.rows_written = (
        counts.frames_done,
        counts.rows_embedded,
        counts.rows_written,
    )
    batch.rows_failed, batch.failure_summary = counts.rows_failed, counts.failure_summary
    if status in TERMINAL and batch.status not in TERMINAL:
        batch.completed_at = now()
        log.info(
            "batch=%s %s: in=%d written=%d failed=%d %s",
            batch.id,
            status,
            batch.rows_in,
            counts.rows_written,
            counts.rows_failed,
            counts.failure_summary or "",
        )
        if status != "COMPLETED":
            log.error(
                "batch=%s ended %s: failures by reason %s%s",
                batch.id,
                status,
                counts.failure_summary,
                f"; {batch.error}" if batch.error else "",
            )
    batch.status = status
    await batch.save()
