"""How a batch's progress is shown while a command follows it.

- :class:`LiveBars`: a rich bar per collection on stderr (a terminal): rows done of rows in, with
  the rows written and failed. A batch of several collections has one bar for the whole batch
  unless the API breaks its counts down per collection.
- :class:`ChangeLines`: a line on stderr per change, where no bar can be drawn (logs, CI, pipes).
- :class:`JsonLines`: a JSON object per change on stdout (``--json-lines``), for scripts.
- :class:`Silent`: nothing (``--json``: stdout holds the final document alone).

:func:`display` picks one. Each is called with every answer of the batch; they draw changes only.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any, Protocol

import typer

from featurebus.sdk.batch_report import ENDED, collection_counts, progress_line

__all__ = ["ChangeLines", "Display", "JsonLines", "LiveBars", "Silent", "display"]


class Display(Protocol):
    def __enter__(self) -> Display: ...

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None: ...

    def show(self, batch: dict[str, Any]) -> None: ...


def _state(batch: dict[str, Any]) -> tuple[Any, ...]:
    keys = ("status", "rows_in", "rows_written", "rows_failed", "rows_cancelled", "frames_done", "frames_total")
    return tuple(batch.get(k) for k in keys)


class Silent:
    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        pass

    def show(self, batch: dict[str, Any]) -> None:
        pass


class ChangeLines(Silent):
    """A :func:`~featurebus.sdk.batch_report.progress_line` on stderr whenever the counts or the status change."""

    def __init__(self) -> None:
        self.last: tuple[Any, ...] | None = None

    def show(self, batch: dict[str, Any]) -> None:
        if (state := _state(batch)) != self.last:
            self.last = state
            typer.echo(progress_line(batch), err=True)


class JsonLines(ChangeLines):
    """``{"event": "progress", batch_id, status, counts, collections}`` on stdout per change."""

    def show(self, batch: dict[str, Any]) -> None:
        if (state := _state(batch)) != self.last:
            self.last = state
            keys = ("batch_id", "status", "rows_in", "rows_written", "rows_failed", "rows_cancelled")
            line = {"event": "progress", **{k: batch.get(k) for k in keys}}
            line |= {"frames_done": batch.get("frames_done"), "frames_total": batch.get("frames_total")}
            line["collections"] = collection_counts(batch)
            typer.echo(json.dumps(line))


class LiveBars(Silent):
    """Rich bars on ``console`` (stderr), left on screen when the batch ends."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows  [green]{task.fields[written]} written[/]  [red]{task.fields[failed]} failed[/]"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> LiveBars:
        self.bars.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.bars.stop()

    def show(self, batch: dict[str, Any]) -> None:
        rows = collection_counts(batch)
        if any(c.get("rows_written") is None for c in rows):  # no per-collection counts: the batch as a whole
            n = len(batch.get("collection_ids") or [])
            planned = bool(batch.get("frames_total")) or batch["status"] in ENDED
            rows = [
                {
                    "collection_id": f"{batch['batch_id']} ({n} collections)",
                    "rows_in": batch["rows_in"] if planned else None,
                    "rows_written": batch["rows_written"],
                    "rows_failed": batch["rows_failed"],
                }
            ]
        for c in rows:
            key = str(c["collection_id"])
            fields = {"written": c["rows_written"], "failed": c["rows_failed"], "status": batch["status"]}
            done = (c["rows_written"] or 0) + (c["rows_failed"] or 0)
            if key not in self.tasks:
                self.tasks[key] = self.bars.add_task(key, total=c["rows_in"], completed=done, **fields)
            else:
                self.bars.update(self.tasks[key], total=c["rows_in"], completed=done, **fields)


def display(*, as_json: bool, json_lines: bool) -> Display:
    """JSON lines, nothing (``--json``), live bars when stderr is a terminal and rich is installed,
    else a line per change."""
    if json_lines:
        return JsonLines()
    if as_json:
        return Silent()
    try:
        from rich.console import Console
    except ImportError:
        return ChangeLines()
    console = Console(stderr=True)
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveBars(console)
    return ChangeLines()
