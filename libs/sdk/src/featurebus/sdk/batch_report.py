"""What ``featurebus batch run|status|retry`` make of a batch's answers (pure: no I/O).

The registry answers a batch (``GET .../batches/{batch_id}``) with its status, its counts in all
and ``collections``: the same counts per collection, summed from the same frames. Its rows in of a
collection are those of the frames reported so far: taken once every frame is in (before, the
batch's planned rows when it has one collection, else ``None``), so that a bar's total never
moves.

A registry from before ``collections`` (or a batch it stored) gives the totals only; then they
come from the failed rows (``.../failed-documents``, each with its collection): the failed rows
of a collection are counted from that list, its written rows are the batch's when the batch has
one collection; with several they are ``None`` (unknown), never a guess.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ENDED",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_NOT_ENDED",
    "EXIT_OK",
    "EXIT_SOME_FAILED",
    "collection_counts",
    "exit_code",
    "progress_line",
    "report",
    "summary_lines",
]

ENDED = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"})

EXIT_OK = 0  # the batch ended COMPLETED: every row written
EXIT_SOME_FAILED = 1  # COMPLETED_WITH_ERRORS: some rows failed, the others were written
# 2 is click's usage error (a bad option or argument), as for every featurebus command.
EXIT_FAILED = 3  # FAILED or CANCELED, or the batch could not be started or read (the API refused, or is unreachable)
EXIT_NOT_ENDED = 4  # still PENDING or IN_PROGRESS: --timeout ran out, or a one-shot status

EXIT_CODES = {
    EXIT_OK: "every row was written (COMPLETED)",
    EXIT_SOME_FAILED: "some rows failed (COMPLETED_WITH_ERRORS)",
    2: "usage error",
    EXIT_FAILED: "the batch FAILED or was CANCELED, or could not be started or read",
    EXIT_NOT_ENDED: "the batch has not ended yet",
}


def exit_code(status: str) -> int:
    """The command's exit code for a batch in ``status``."""
    if status == "COMPLETED":
        return EXIT_OK
    if status == "COMPLETED_WITH_ERRORS":
        return EXIT_SOME_FAILED
    if status in ENDED:
        return EXIT_FAILED
    return EXIT_NOT_ENDED


def collection_counts(batch: dict[str, Any], failed: Iterable[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Rows in, written and failed per collection of ``batch``; ``None`` where the API does not say.

    ``failed`` is every failed row of the batch (to count them per collection); without it the
    failed rows are known only for a batch of one collection.
    """
    if isinstance(batch.get("collections"), list):
        return _reported(batch, batch["collections"])
    ids = list(batch.get("collection_ids") or [])
    if len(ids) == 1:
        rows_in = batch["rows_in"] if batch.get("frames_total") or batch["status"] in ENDED else None
        return [
            {
                "collection_id": ids[0],
                "rows_in": rows_in,
                "rows_written": batch["rows_written"],
                "rows_failed": batch["rows_failed"],
            }
        ]
    per = Counter(str(row["collection_id"]) for row in failed) if failed is not None else None
    return [
        {
            "collection_id": cid,
            "rows_in": None,
            "rows_written": None,
            "rows_failed": per.get(cid, 0) if per is not None else None,
        }
        for cid in ids
    ]


def _reported(batch: dict[str, Any], collections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The registry's own counts per collection; rows in only once they are final (see the module)."""
    planned = bool(batch.get("frames_total"))
    final = batch["status"] in ENDED or (planned and batch.get("frames_done", 0) >= batch["frames_total"])
    planned_rows = batch["rows_in"] if planned and len(collections) == 1 else None
    return [
        {
            "collection_id": c["collection_id"],
            "rows_in": c.get("rows_in") if final else planned_rows,
            "rows_written": c.get("rows_written"),
            "rows_failed": c.get("rows_failed"),
        }
        for c in collections
    ]


def report(
    batch: dict[str, Any],
    shown: list[dict[str, Any]],
    failed_total: int,
    every_failed: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The final document of ``--json``: the batch as the API answered it, plus ``collections``
    (counted from ``every_failed`` when given), ``failed_documents`` (``shown``, the first few),
    ``failed_documents_total``, ``exit_code`` and, when rows failed, the ``retry`` command."""
    out = dict(batch)
    out["collections"] = collection_counts(batch, every_failed)
    out["failed_documents"] = shown
    out["failed_documents_total"] = failed_total
    out["exit_code"] = exit_code(batch["status"])
    out["retry"] = f"featurebus batch retry {batch['batch_id']}" if failed_total and batch["status"] in ENDED else None
    return out


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def progress_line(batch: dict[str, Any]) -> str:
    """One line of a batch's progress, for logs (where no live bar is drawn)."""
    total = f"/{batch['rows_in']}" if batch.get("frames_total") or batch["status"] in ENDED else ""
    done = batch["rows_written"] + batch["rows_failed"]
    return (
        f"{batch['batch_id']} {batch['status']}: {done}{total} rows "
        f"(written {batch['rows_written']}, failed {batch['rows_failed']}), "
        f"frames {batch.get('frames_done', 0)}/{batch.get('frames_total', 0)}"
    )


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The human summary of a :func:`report`: the outcome, each collection, the failures by
    reason with their counts, a few failed documents with message and hint, and the retry."""
    written, failed, rows_in = doc["rows_written"], doc["rows_failed"], doc["rows_in"]
    lines = [
        f"batch {doc['batch_id']} {doc['status']}: {written} of {rows_in} rows written, {failed} failed"
        + (f", {doc['rows_cancelled']} cancelled" if doc.get("rows_cancelled") else "")
        + f" (task {doc.get('task_id')})"
    ]
    if doc.get("error"):
        lines.append(f"  error: {doc['error']}")
    for c in doc["collections"]:
        lines.append(
            f"  collection {c['collection_id']}: {_count(c.get('rows_written'))} written, "
            f"{_count(c.get('rows_failed'))} failed"
        )
    if any(c.get("rows_written") is None for c in doc["collections"]):
        lines.append("  (the registry counts written rows for this batch as a whole, not per collection)")
    summary: dict[str, int] = doc.get("failure_summary") or {}
    if summary:
        lines.append("failures by reason:")
        width = max(len(reason) for reason in summary)
        for reason, n in sorted(summary.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {reason.ljust(width)}  {n}")
    shown: list[dict[str, Any]] = doc["failed_documents"]
    if shown:
        lines.append(f"failed documents ({len(shown)} of {doc['failed_documents_total']}):")
        for row in shown:
            lines.append(
                f"  {row['document_id']} (object {row['object_id']}, collection {row['collection_id']}): "
                f"{row['reason']}: {row['message']}"
            )
            if row.get("hint"):
                lines.append(f"      hint: {row['hint']}")
    if doc.get("retry"):
        lines.append(f"run the failed documents again: {doc['retry']}")
    return lines
