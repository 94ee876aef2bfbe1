"""``featurebus plugin publish`` step by step: upload (bytes sent), confirm, the platform's scan
(its state as it changes), deploy — each shown on stderr as it happens.

On a terminal (with rich installed) each step is a line with a spinner, a bar for the upload and
the time it took; elsewhere a line per state, so logs read ``upload: ...``, ``scan: scanning``,
``scan: passed``. With ``quiet`` (``--json``) nothing is shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import typer

from featurebus.sdk.client import ApiError, Client

__all__ = ["CHUNK", "StepProgress", "deploy", "upload", "wait_for_scan"]

CHUNK = 1024 * 1024


class StepProgress:
    """The state of each step of a publish, on stderr."""

    def __init__(self, quiet: bool = False, console: Any = None) -> None:
        self.quiet = quiet
        self.bars: Any = None
        self.tasks: dict[str, Any] = {}
        self.last: dict[str, str] = {}
        if quiet:
            return
        try:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        except ImportError:
            return
        console = console or Console(stderr=True)
        if console.is_terminal and not console.is_dumb_terminal:
            self.bars = Progress(
                SpinnerColumn(finished_text="[green]✓[/]"),
                TextColumn("{task.description:<8}"),
                BarColumn(),
                TextColumn("{task.fields[state]}"),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> StepProgress:
        if self.bars is not None:
            self.bars.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()

    def state(self, step: str, state: str, *, done: int | None = None, total: int | None = None) -> None:
        """``step`` is now in ``state`` (``done`` of ``total`` units when it counts them)."""
        if self.bars is not None:
            if step not in self.tasks:
                self.tasks[step] = self.bars.add_task(step, total=total, state=state)
            self.bars.update(self.tasks[step], state=state, total=total, completed=done or 0)
        elif not self.quiet and self.last.get(step) != state:
            typer.echo(f"{step}: {state}", err=True)
        self.last[step] = state

    def finish(self, step: str, state: str) -> None:
        """``step`` has ended in ``state``."""
        if self.bars is not None:
            if step not in self.tasks:
                self.tasks[step] = self.bars.add_task(step, total=1, state=state)
            total = self.bars.tasks[self.tasks[step]].total or 1
            self.bars.update(self.tasks[step], state=state, total=total, completed=total)
        elif not self.quiet and self.last.get(step) != state:
            typer.echo(f"{step}: {state}", err=True)
        self.last[step] = state


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def upload(fb: Client, ns: str, archive: bytes, name: str, version: str, steps: StepProgress) -> dict[str, Any]:
    """Ask for an upload URL, PUT the archive to it a chunk at a time, confirm: the upload."""
    up = dict(
        fb.request(
            "POST",
            f"/v1/namespaces/{ns}/plugins/uploads",
            json={"name": name, "version": version, "file_size_bytes": len(archive)},
        )
    )
    size = len(archive)
    steps.state("upload", f"{name} {version}: 0 B of {_human(size)}", done=0, total=size)

    def chunks() -> Iterator[bytes]:
        for start in range(0, size, CHUNK):
            chunk = archive[start : start + CHUNK]
            yield chunk
            sent = start + len(chunk)
            if steps.bars is not None:  # a line per chunk would flood a log
                steps.state("upload", f"{_human(sent)} of {_human(size)}", done=sent, total=size)

    method = str(up.get("method") or "PUT")
    # An explicit Content-Length: the object store refuses chunked uploads; no API key goes with it.
    answer = fb.store.request(
        method, up["presigned_url"], content=chunks(), headers={"Content-Length": str(size)}, timeout=300
    )
    if answer.status_code >= 300:
        raise ApiError(
            method, "<presigned_url>", answer.status_code, f"the object store refused the upload: {answer.text[:200]}"
        )
    steps.finish("upload", f"{_human(size)} sent")
    fb.request("POST", f"/v1/namespaces/{ns}/plugins/uploads/{up['upload_id']}/confirm")
    steps.finish("confirm", f"{up['plugin_id']}; waiting for the scan")
    return up


def wait_for_scan(
    fb: Client, ns: str, plugin_id: str, timeout: float, steps: StepProgress, every: float = 1.0
) -> dict[str, Any]:
    """The plugin's status once the platform's scan has a verdict; each state shown as it comes."""
    deadline = time.monotonic() + timeout
    began = time.monotonic()
    while True:
        status = fb.plugin_status(ns, plugin_id)
        state = str(status["scan"]["status"])
        if state != "scanning":
            steps.finish("scan", state)
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scan of {plugin_id} did not finish within {timeout:g}s; last seen: {status}")
        waited = time.monotonic() - began
        steps.state("scan", "scanning" if steps.bars is None else f"scanning ({waited:.0f}s)")
        time.sleep(every)


def deploy(fb: Client, ns: str, plugin_id: str, steps: StepProgress) -> dict[str, Any]:
    """Deploy for batch processing; the deploy answer."""
    steps.state("deploy", "batch_only")
    deployed = fb.deploy_for_batch(ns, plugin_id)
    enabled = "batch enabled" if deployed.get("batch_enabled") else "batch not enabled yet"
    steps.finish("deploy", f"{deployed['status']} ({enabled})")
    return deployed
