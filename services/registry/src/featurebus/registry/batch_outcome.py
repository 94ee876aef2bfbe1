"""A batch's outcome from its frames (pure: no I/O): the counts, summed once per frame, and the
status they give, the one rule that makes "COMPLETED with 0 documents" impossible."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from featurebus.common.events import RowFailure

__all__ = ["CANCELED", "TERMINAL", "BatchCounts", "rows_cancelled", "status_of", "tally", "tally_by_collection"]

# Mixpeek's TaskStatusEnum spells it with one L; a client written for Mixpeek stops polling on it.
CANCELED = "CANCELED"
TERMINAL = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", CANCELED})


@dataclass
class BatchCounts:
    frames_done: int = 0
    rows_in: int = 0
    rows_embedded: int = 0
    rows_written: int = 0
    rows_failed: int = 0
    failure_summary: dict[str, int] = field(default_factory=dict)


def tally(frames: Iterable[tuple[int, int, int, list[RowFailure]]]) -> BatchCounts:
    """Sum per-frame (rows_in, rows_embedded, rows_written, failures) — each frame counted once."""
    counts, reasons = BatchCounts(), Counter[str]()
    for rows_in, embedded, written, failures in frames:
        counts.frames_done += 1
        counts.rows_in += rows_in
        counts.rows_embedded += embedded
        counts.rows_written += written
        counts.rows_failed += len(failures)
        reasons.update(f.reason.value for f in failures)
    counts.failure_summary = dict(reasons)
    return counts


def tally_by_collection(
    collection_ids: Sequence[str], frames: Iterable[tuple[str, int, int, int, list[RowFailure]]]
) -> dict[str, BatchCounts]:
    """:func:`tally` per collection of per-frame (collection_id, rows_in, rows_embedded, rows_written, failures).

    One entry per id of ``collection_ids``, in that order (zeros before its first frame), then any
    other collection a frame names: every frame is counted in exactly one entry, so the entries
    add up to :func:`tally` of the same frames.
    """
    grouped: dict[str, list[tuple[int, int, int, list[RowFailure]]]] = {cid: [] for cid in collection_ids}
    for cid, rows_in, embedded, written, failures in frames:
        grouped.setdefault(cid, []).append((rows_in, embedded, written, failures))
    return {cid: tally(rows) for cid, rows in grouped.items()}


def status_of(
    *, planned: bool, frames_total: int, rows_in: int, counts: BatchCounts, error: str | None, cancelled: bool = False
) -> str:
    """PENDING → IN_PROGRESS → COMPLETED | COMPLETED_WITH_ERRORS | FAILED, or CANCELED at any time before.

    COMPLETED only when every row planned was written; FAILED when none was (or the batch could
    not be planned at all); COMPLETED_WITH_ERRORS otherwise. A cancelled batch stays CANCELED
    whatever its frames still in flight report (see :func:`rows_cancelled`).
    """
    if cancelled:
        return CANCELED
    if error is not None:
        return "FAILED"
    if not planned:
        return "IN_PROGRESS" if counts.frames_done else "PENDING"
    if counts.frames_done < frames_total:
        return "IN_PROGRESS"
    if counts.rows_written == 0:
        return "FAILED"
    if counts.rows_written == rows_in and counts.rows_failed == 0:
        return "COMPLETED"
    return "COMPLETED_WITH_ERRORS"


def rows_cancelled(*, cancelled: bool, rows_in: int, counts: BatchCounts) -> int:
    """The rows of a cancelled batch that were neither written nor failed: they never ran.

    So that a cancelled batch reconciles too: rows_in == written + failed + cancelled. A frame that
    was running when the batch was cancelled and finishes later moves its rows from cancelled to
    written or failed; before the batch is planned (rows_in unknown) nothing is counted.
    """
    if not cancelled:
        return 0
    return max(0, rows_in - counts.rows_written - counts.rows_failed)
