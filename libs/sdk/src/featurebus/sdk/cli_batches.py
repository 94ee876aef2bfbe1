"""``featurebus batch``: start a batch over a bucket and follow it to its end.

    featurebus batch run BUCKET_ID [--collection C]... --namespace NS   trigger, follow, summarize
    featurebus batch status BATCH_ID [--watch]                          one look, or follow it
    featurebus batch retry BATCH_ID                                     run the failed documents again

Each follows the batch with a live bar per collection on stderr (a line per change when stderr is
not a terminal), then prints the outcome on stdout: the counts per collection, the failures by
reason, the first failed documents with their message and hint. ``--json`` prints one JSON
document and nothing else; ``--json-lines`` a JSON line per change, then the document as the
last line. Exit codes (:data:`~featurebus.sdk.batch_report.EXIT_CODES`): 0 every row written,
1 some rows failed, 2 usage error, 3 the batch FAILED or was CANCELED or could not be started or
read, 4 not ended yet (``--timeout``, or ``status`` without ``--watch``), 130 interrupted.

A batch is found by its id alone: its task (``GET /v1/tasks/{task_id}``, the id the registry
derives from the batch id) names its namespace and bucket; ``--namespace`` with ``--bucket``
skips that look-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import typer

from featurebus.common import ids
from featurebus.sdk.batch_progress import display
from featurebus.sdk.batch_report import ENDED, EXIT_FAILED, exit_code, report, summary_lines
from featurebus.sdk.client import ApiError, Client

__all__ = ["batch"]

batch = typer.Typer(
    help="Run batches over a bucket and follow them: live progress, then the failure summary.",
    no_args_is_help=True,
)

MAX_PAGE = 1000  # the registry's largest ``limit``

UrlOption = typer.Option("http://127.0.0.1:8000", "--url", envvar="FEATUREBUS_URL", help="the registry")
KeyOption = typer.Option(..., "--key", envvar="FEATUREBUS_API_KEY", help="API key (Bearer)")
JsonOption = typer.Option(False, "--json", help="print the final JSON document alone (no progress)")
JsonLinesOption = typer.Option(
    False, "--json-lines", help="a JSON line on stdout per change, then the final document as the last line"
)
ShowOption = typer.Option(5, "--show", min=0, help="how many failed documents to print")
TimeoutOption = typer.Option(
    None, "--timeout", min=0, help="stop following after this many seconds (exit 4; the batch runs on)"
)
EveryOption = typer.Option(1.0, "--every", min=0, help="seconds between two looks at the batch")


@dataclass(frozen=True)
class Follow:
    """How a command follows a batch and prints it."""

    as_json: bool
    json_lines: bool
    show: int
    timeout: float | None
    every: float

    @property
    def quiet(self) -> bool:
        return self.as_json or self.json_lines


@dataclass(frozen=True)
class Where:
    """The batches path of a bucket."""

    namespace: str
    bucket_id: str

    @property
    def batches(self) -> str:
        return f"/v1/namespaces/{self.namespace}/buckets/{self.bucket_id}/batches"


# ------------------------------------------------------------------------------------- commands


@batch.command("run")
def run(
    bucket_id: str = typer.Argument(..., metavar="BUCKET_ID", help="the bucket whose objects the batch processes"),
    collections: list[str] = typer.Option(
        [],
        "--collection",
        "-c",
        help="a collection id or name to write into (repeatable; default: every collection fed by the bucket)",
    ),
    namespace: str = typer.Option(..., "--namespace", envvar="FEATUREBUS_NAMESPACE", help="namespace id or name"),
    as_json: bool = JsonOption,
    json_lines: bool = JsonLinesOption,
    show: int = ShowOption,
    timeout: float | None = TimeoutOption,
    every: float = EveryOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Trigger a batch over BUCKET_ID, follow it, print the failure summary.

    Exit 0 when every row was written, 1 when some rows failed, 3 when the batch failed or could
    not start, 4 on --timeout.
    """
    how = Follow(as_json, json_lines, show, timeout, every)
    with _api(url), Client(url, key) as fb:
        where = Where(namespace, bucket_id)
        fb.request("GET", f"/v1/namespaces/{namespace}/buckets/{bucket_id}")  # an unknown bucket: its 404
        targets = _collection_ids(fb, where, collections)
        started = fb.request("POST", f"{where.batches}/trigger", json={"collection_ids": targets})
        if not how.quiet:
            typer.echo(
                f"started batch {started['batch_id']} (task {started['task_id']}) into "
                f"{len(targets)} collection(s): {', '.join(targets)}",
                err=True,
            )
        _follow(fb, where, started, how, url)


@batch.command("status")
def status(
    batch_id: str = typer.Argument(..., metavar="BATCH_ID", help="a batch id (btch_...) or its task id (task_...)"),
    watch: bool = typer.Option(False, "--watch", "-w", help="follow the batch until it ends"),
    namespace: str | None = typer.Option(None, "--namespace", help="with --bucket: where the batch is"),
    bucket_id: str | None = typer.Option(None, "--bucket", help="the batch's bucket (skips the task look-up)"),
    as_json: bool = JsonOption,
    json_lines: bool = JsonLinesOption,
    show: int = ShowOption,
    timeout: float | None = TimeoutOption,
    every: float = EveryOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """A batch's status, counts and failed documents; --watch follows it to its end.

    Exit codes as for `run`; 4 while it runs (without --watch).
    """
    how = Follow(as_json, json_lines, show, timeout if watch else 0, every)
    with _api(url), Client(url, key) as fb:
        where, batch_id = _locate(fb, batch_id, namespace, bucket_id)
        current = fb.request("GET", f"{where.batches}/{batch_id}")
        if watch:
            _follow(fb, where, current, how, url)
        else:
            _finish(fb, where, current, how)


@batch.command("retry")
def retry(
    batch_id: str = typer.Argument(..., metavar="BATCH_ID", help="the batch whose failed documents to run again"),
    namespace: str | None = typer.Option(None, "--namespace", help="with --bucket: where the batch is"),
    bucket_id: str | None = typer.Option(None, "--bucket", help="the batch's bucket (skips the task look-up)"),
    as_json: bool = JsonOption,
    json_lines: bool = JsonLinesOption,
    show: int = ShowOption,
    timeout: float | None = TimeoutOption,
    every: float = EveryOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Run the failed documents of a batch again, in a new batch, and follow it.

    The new batch covers the objects that had a failed row, into the same collections; exit codes
    as for `run`.
    """
    how = Follow(as_json, json_lines, show, timeout, every)
    with _api(url), Client(url, key) as fb:
        where, batch_id = _locate(fb, batch_id, namespace, bucket_id)
        started = fb.request("POST", f"{where.batches}/{batch_id}/retry")
        if not how.quiet:
            typer.echo(f"started batch {started['batch_id']} to retry the failed documents of {batch_id}", err=True)
        _follow(fb, where, started, how, url)


# ------------------------------------------------------------------------------------- helpers


def _collection_ids(fb: Client, where: Where, given: list[str]) -> list[str]:
    """The ids of the collections named (by id or name), or of every collection fed by the bucket."""
    if given:
        return [
            str(fb.request("GET", f"/v1/namespaces/{where.namespace}/collections/{c}")["collection_id"]) for c in given
        ]
    found: list[dict[str, Any]] = []
    while True:
        page = fb.request(
            "GET", f"/v1/namespaces/{where.namespace}/collections", params={"offset": len(found), "limit": MAX_PAGE}
        )
        found += page["results"]
        if not page["results"] or len(found) >= page["total"]:
            break
    fed = [str(c["collection_id"]) for c in found if where.bucket_id in (c.get("source") or {}).get("bucket_ids", [])]
    if not fed:
        _fail(
            f"no collection of namespace {where.namespace} has bucket {where.bucket_id} as its source",
            "create one with source {'type': 'bucket', 'bucket_ids': [BUCKET_ID]}, or name one with --collection",
        )
    return fed


def _locate(fb: Client, batch_id: str, namespace: str | None, bucket_id: str | None) -> tuple[Where, str]:
    """Where the batch is: from --namespace and --bucket, or from its task."""
    if bucket_id is not None or namespace is not None:
        if bucket_id is None or namespace is None:
            raise typer.BadParameter("pass --namespace and --bucket together, or neither", param_hint="--bucket")
        return Where(namespace, bucket_id), batch_id
    task_id = batch_id if batch_id.startswith("task_") else ids.deterministic_id("task", batch_id)
    try:
        task = fb.request("GET", f"/v1/tasks/{task_id}")
    except ApiError as err:
        if err.status != 404:
            raise
        _fail(
            f"batch {batch_id!r} not found: {err.method} {err.path}: {err.status} {err.detail}",
            err.hint
            or "check the id (`featurebus batch run` prints it) and that this API key may see its namespace; "
            "--namespace with --bucket looks in one bucket",
        )
    return Where(str(task["namespace_id"]), str(task["bucket_id"])), str(task["batch_id"])


def _follow(fb: Client, where: Where, current: dict[str, Any], how: Follow, url: str) -> NoReturn:
    """Look at the batch every ``how.every`` seconds, showing each answer, until it ends or
    ``how.timeout`` runs out; then print the outcome and exit with its code."""
    deadline = None if how.timeout is None else time.monotonic() + how.timeout
    path = f"{where.batches}/{current['batch_id']}"
    try:
        with display(as_json=how.as_json, json_lines=how.json_lines) as shown:
            shown.show(current)
            while current["status"] not in ENDED and (deadline is None or time.monotonic() < deadline):
                time.sleep(how.every)
                current = fb.request("GET", path)
                shown.show(current)
    except KeyboardInterrupt:
        typer.echo(
            f"\nstopped following batch {current['batch_id']} ({current['status']}); it runs on: "
            f"featurebus batch status {current['batch_id']} --watch",
            err=True,
        )
        raise typer.Exit(130) from None
    _finish(fb, where, current, how)


def _finish(fb: Client, where: Where, current: dict[str, Any], how: Follow) -> NoReturn:
    """Print the outcome (the summary, or the JSON document) and exit with its code."""
    path = f"{where.batches}/{current['batch_id']}/failed-documents"
    shown: list[dict[str, Any]] = []
    every_failed: list[dict[str, Any]] | None = None
    total = 0
    if current["rows_failed"]:
        if len(current.get("collection_ids") or []) > 1 and not isinstance(current.get("collections"), list):
            every_failed = _every_failed(fb, path)  # counted per collection
            shown, total = every_failed[: how.show], len(every_failed)
        else:
            page = fb.request("GET", path, params={"offset": 0, "limit": max(how.show, 1)})
            shown, total = page["results"][: how.show], int(page["total"])
    doc = report(current, shown, total, every_failed)
    doc["namespace"] = where.namespace
    if how.json_lines:
        typer.echo(json.dumps({"event": "done", **doc}))
    elif how.as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        for line in summary_lines(doc):
            typer.echo(line)
        if current["status"] not in ENDED:
            typer.echo(
                f"batch {current['batch_id']} is still {current['status']}; follow it with "
                f"featurebus batch status {current['batch_id']} --watch",
                err=True,
            )
    raise typer.Exit(exit_code(current["status"]))


def _every_failed(fb: Client, path: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        page = fb.request("GET", path, params={"offset": len(rows), "limit": MAX_PAGE})
        rows += page["results"]
        if not page["results"] or len(rows) >= page["total"]:
            return rows


@contextmanager
def _api(url: str) -> Iterator[None]:
    """An API refusal (its detail and hint) or an unreachable registry (its URL) on stderr, exit 3."""
    try:
        yield
    except ApiError as err:
        where = f"{err.method} {err.path}" + (f": {err.status}" if err.status else "")
        _fail(f"{where} {err.detail}", err.hint)
    except httpx.TransportError as err:
        _fail(
            f"cannot reach the registry at {url}: {err}",
            "is it running (`make run`)? --url or FEATUREBUS_URL names it",
        )


def _fail(message: str, hint: str | None = None) -> NoReturn:
    typer.echo(f"error: {message}" + (f"\n    hint: {hint}" if hint else ""), err=True)
    raise typer.Exit(EXIT_FAILED)
