"""`featurebus batch run|status|retry` against an in-memory twin of the batch routes: the trigger,
a batch whose counts advance with every look, its failed documents in pages, the task look-up,
and the registry's 404s with their detail and hint."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from featurebus.common import ids
from featurebus.sdk import cli_batches
from featurebus.sdk.batch_progress import ChangeLines, LiveBars
from featurebus.sdk.cli import app
from featurebus.sdk.client import Client

runner = CliRunner()
KEY = "key-1"
NS, BUCKET = "ns_1", "bkt_1"
ZERO_HINT = "return the embedding itself"
TASK_1 = ids.deterministic_id("task", "btch_1")


def failure(i: int, collection: str, reason: str = "zero_vector") -> dict[str, Any]:
    return {
        "collection_id": collection,
        "document_id": f"doc_{i}",
        "object_id": f"obj_{i}",
        "reason": reason,
        "message": f"'vec' of row {i} is all zeros",
        "hint": ZERO_HINT,
    }


class FakeBatches(httpx.BaseTransport):
    """The batch routes of one namespace: each GET of a batch moves it one step along ``script``
    (counts over time), ending in ``end``; ``failed`` are its failed rows. Each collection runs
    ``rows_in`` rows; the answers carry the counts per collection (``collections``) unless
    ``per_collection`` is False (a registry from before them)."""

    def __init__(self, rows_in: int = 5, failed: list[dict[str, Any]] | None = None, status: str = "") -> None:
        self.per_collection = True
        self.collections = {
            "col_a": {"collection_id": "col_a", "name": "articles", "source": {"bucket_ids": [BUCKET]}},
            "col_b": {"collection_id": "col_b", "name": "other", "source": {"bucket_ids": ["bkt_other"]}},
        }
        self.rows_in, self.failed = rows_in, failed or []
        self.end = status or ("COMPLETED_WITH_ERRORS" if self.failed else "COMPLETED")
        self.batches: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []
        self.triggered: list[list[str]] = []

    def script(self, collection_ids: list[str]) -> list[dict[str, Any]]:
        n, k = self.rows_in, len(collection_ids)
        ends = []
        for cid in collection_ids:
            failed = n if self.end == "FAILED" else sum(row["collection_id"] == cid for row in self.failed)
            ends.append(
                {
                    "collection_id": cid,
                    "rows_in": n,
                    "rows_embedded": n,
                    "rows_written": n - failed,
                    "rows_failed": failed,
                }
            )
        # Half of each collection's written rows reported (its first frame), none of its failed ones yet.
        halves = [
            c | dict.fromkeys(("rows_in", "rows_embedded", "rows_written"), c["rows_written"] // 2) | {"rows_failed": 0}
            for c in ends
        ]
        zeros = [c | dict.fromkeys(("rows_in", "rows_embedded", "rows_written", "rows_failed"), 0) for c in ends]
        steps = [
            {"status": "PENDING", "frames_total": 0, "frames_done": 0, "rows_in": 0, "collections": zeros},
            {"status": "IN_PROGRESS", "frames_total": 2 * k, "frames_done": k, "rows_in": n * k, "collections": halves},
            {"status": self.end, "frames_total": 2 * k, "frames_done": 2 * k, "rows_in": n * k, "collections": ends,
             "failure_summary": dict(_summary(self.failed)), "error": None},
        ]  # fmt: skip
        for step in steps:
            step["rows_written"] = sum(c["rows_written"] for c in step["collections"])
            step["rows_failed"] = sum(c["rows_failed"] for c in step["collections"])
            if not self.per_collection:
                del step["collections"]
        return steps

    def new_batch(self, collection_ids: list[str]) -> dict[str, Any]:
        batch_id = f"btch_{len(self.batches) + 1}"
        view = {
            "batch_id": batch_id,
            "task_id": ids.deterministic_id("task", batch_id),
            "bucket_id": BUCKET,
            "collection_ids": collection_ids,
            "rows_embedded": 0,
            "rows_cancelled": 0,
            "failure_summary": {},
            "error": None,
            "object_ids": None,
            "created_at": "2025-01-01T00:00:00Z",
            "completed_at": None,
            "cancelled_at": None,
        }
        steps = self.script(collection_ids)
        self.batches[batch_id] = view | steps[0]
        self.steps[batch_id] = steps[1:]
        return self.batches[batch_id]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.calls.append((method, path))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"detail": "invalid API key"})
        if m := re.fullmatch(r"/v1/tasks/([^/]+)", path):
            found = [b for b in self.batches.values() if b["task_id"] == m[1]]
            if not found:
                return httpx.Response(404, json={"detail": f"task {m[1]!r} not found"})
            return httpx.Response(200, json={**found[0], "namespace_id": NS})
        m = re.fullmatch(r"/v1/namespaces/([^/]+)/(buckets|collections)(?:/([^/]+))?(/.*)?", path)
        assert m, path
        ns, kind, ident, rest = m.groups()
        if ns != NS:
            return httpx.Response(
                404, json={"detail": f"namespace {ns!r} not found", "hint": "create it with POST /v1/namespaces"}
            )
        if kind == "collections":
            if ident is None:
                offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
                listed = list(self.collections.values())
                return httpx.Response(200, json={"results": listed[offset : offset + limit], "total": len(listed)})
            col = self.collections.get(ident) or next(
                (c for c in self.collections.values() if c["name"] == ident), None
            )
            if col is None:
                return httpx.Response(404, json={"detail": f"collection {ident!r} not found"})
            return httpx.Response(200, json=col)
        if ident != BUCKET:
            return httpx.Response(404, json={"detail": f"bucket {ident!r} not found in namespace {ns!r}"})
        return self.batch_route(method, rest or "", request)

    def batch_route(self, method: str, rest: str, request: httpx.Request) -> httpx.Response:
        if rest == "":
            return httpx.Response(200, json={"bucket_id": BUCKET})
        if rest == "/batches/trigger":
            body = json.loads(request.content)
            self.triggered.append(body["collection_ids"])
            return httpx.Response(201, json=self.new_batch(body["collection_ids"]))
        m = re.fullmatch(r"/batches/([^/]+)(/failed-documents|/retry)?", rest)
        assert m, rest
        batch = self.batches.get(m[1])
        if batch is None:
            return httpx.Response(404, json={"detail": f"batch {m[1]!r} not found in bucket {BUCKET!r}"})
        if m[2] == "/failed-documents":
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            shown = self.failed if batch["status"] == self.end else []
            return httpx.Response(200, json={"results": shown[offset : offset + limit], "total": len(shown)})
        if m[2] == "/retry":
            if not self.failed:
                return httpx.Response(409, json={"detail": f"batch {m[1]} has no failed documents to retry"})
            self.failed = []
            self.end = "COMPLETED"
            return httpx.Response(201, json=self.new_batch(batch["collection_ids"]))
        if self.steps[m[1]]:
            batch |= self.steps[m[1]].pop(0)
        return httpx.Response(200, json=batch)


def _summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return counts


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBatches:
    registry = FakeBatches(failed=[failure(3, "col_a")])
    monkeypatch.setattr(cli_batches, "Client", lambda url, key: Client(url, key, transport=registry))
    monkeypatch.setenv("FEATUREBUS_URL", "http://registry.test")
    monkeypatch.setenv("FEATUREBUS_API_KEY", KEY)
    monkeypatch.delenv("FEATUREBUS_NAMESPACE", raising=False)
    return registry


def batch(*args: str) -> Any:
    return runner.invoke(app, ["batch", *args, "--every", "0"])


def test_run_follows_to_the_end_and_prints_the_failure_summary(fake: FakeBatches) -> None:
    result = batch("run", BUCKET, "--namespace", NS, "--collection", "articles")
    assert result.exit_code == 1, result.output
    assert fake.triggered == [["col_a"]]  # the name resolved to its id
    assert result.stdout.splitlines() == [
        f"batch btch_1 COMPLETED_WITH_ERRORS: 4 of 5 rows written, 1 failed (task {TASK_1})",
        "  collection col_a: 4 written, 1 failed",
        "failures by reason:",
        "  zero_vector  1",
        "failed documents (1 of 1):",
        "  doc_3 (object obj_3, collection col_a): zero_vector: 'vec' of row 3 is all zeros",
        f"      hint: {ZERO_HINT}",
        "run the failed documents again: featurebus batch retry btch_1",
    ]
    # no terminal here: a line per change on stderr, no live bar
    progress = [line for line in result.stderr.splitlines() if line.startswith("btch_1 ")]
    assert progress == [
        "btch_1 PENDING: 0 rows (written 0, failed 0), frames 0/0",
        "btch_1 IN_PROGRESS: 2/5 rows (written 2, failed 0), frames 1/2",
        "btch_1 COMPLETED_WITH_ERRORS: 5/5 rows (written 4, failed 1), frames 2/2",
    ]
    assert "started batch btch_1" in result.stderr


def test_run_json_prints_one_document_and_nothing_else(fake: FakeBatches) -> None:
    result = batch("run", BUCKET, "--namespace", NS, "--json")
    assert result.exit_code == 1, result.output
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert fake.triggered == [["col_a"]]  # by default: the collections fed by the bucket
    counts = (doc["status"], doc["rows_in"], doc["rows_written"], doc["rows_failed"])
    assert counts == ("COMPLETED_WITH_ERRORS", 5, 4, 1)
    assert doc["collections"] == [{"collection_id": "col_a", "rows_in": 5, "rows_written": 4, "rows_failed": 1}]
    assert doc["failure_summary"] == {"zero_vector": 1} and doc["failed_documents_total"] == 1
    assert doc["failed_documents"] == [failure(3, "col_a")]
    assert doc["exit_code"] == 1 and doc["retry"] == "featurebus batch retry btch_1" and doc["namespace"] == NS


def test_run_json_lines_streams_changes_then_the_document(fake: FakeBatches) -> None:
    result = batch("run", BUCKET, "--namespace", NS, "--json-lines")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == ["progress", "progress", "progress", "done"]
    assert [line["status"] for line in lines[:3]] == ["PENDING", "IN_PROGRESS", "COMPLETED_WITH_ERRORS"]
    assert lines[1]["collections"] == [{"collection_id": "col_a", "rows_in": 5, "rows_written": 2, "rows_failed": 0}]
    assert lines[-1]["failed_documents_total"] == 1 and result.exit_code == 1


def test_run_exits_0_when_every_row_is_written(fake: FakeBatches) -> None:
    fake.failed, fake.end = [], "COMPLETED"
    result = batch("run", BUCKET, "--namespace", NS, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["failed_documents"] == [] and doc["retry"] is None and doc["rows_written"] == 5


def test_run_exits_3_when_the_batch_fails(fake: FakeBatches) -> None:
    fake.failed = [failure(i, "col_a", "plugin_exception") for i in range(5)]
    fake.end = "FAILED"
    result = batch("run", BUCKET, "--namespace", NS, "--show", "2")
    assert result.exit_code == 3, result.output
    assert "batch btch_1 FAILED: 0 of 5 rows written, 5 failed" in result.stdout
    assert "  plugin_exception  5" in result.stdout and "failed documents (2 of 5):" in result.stdout


def test_several_collections_show_the_registrys_counts_per_collection(fake: FakeBatches) -> None:
    fake.collections["col_b"]["source"] = {"bucket_ids": [BUCKET]}
    fake.failed = [failure(1, "col_a"), failure(2, "col_b"), failure(3, "col_b")]
    result = batch("run", BUCKET, "--namespace", NS, "--json-lines", "--show", "1")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert fake.triggered == [["col_a", "col_b"]] and result.exit_code == 1
    # While frames are still to come, a collection's rows in are not final: unknown, not a moving total.
    assert lines[1]["collections"] == [
        {"collection_id": "col_a", "rows_in": None, "rows_written": 2, "rows_failed": 0},
        {"collection_id": "col_b", "rows_in": None, "rows_written": 1, "rows_failed": 0},
    ]
    doc = lines[-1]
    assert doc["collections"] == [
        {"collection_id": "col_a", "rows_in": 5, "rows_written": 4, "rows_failed": 1},
        {"collection_id": "col_b", "rows_in": 5, "rows_written": 3, "rows_failed": 2},
    ]
    assert (doc["rows_in"], doc["rows_written"], doc["rows_failed"]) == (10, 7, 3)
    assert len(doc["failed_documents"]) == 1 and doc["failed_documents_total"] == 3
    paged = [c for c in fake.calls if c[1].endswith("/failed-documents")]
    assert len(paged) == 1  # the counts come with the batch: the failed rows are not all read to count them
    text = batch("status", "btch_1")
    assert "  collection col_a: 4 written, 1 failed" in text.stdout
    assert "  collection col_b: 3 written, 2 failed" in text.stdout
    assert "not per collection" not in text.stdout


def test_a_registry_without_counts_per_collection_counts_failures_and_says_what_is_unknown(
    fake: FakeBatches,
) -> None:
    fake.per_collection = False
    fake.collections["col_b"]["source"] = {"bucket_ids": [BUCKET]}
    fake.failed = [failure(1, "col_a"), failure(2, "col_b"), failure(3, "col_b")]
    result = batch("run", BUCKET, "--namespace", NS, "--json", "--show", "1")
    doc = json.loads(result.stdout)
    assert fake.triggered == [["col_a", "col_b"]]
    assert doc["collections"] == [
        {"collection_id": "col_a", "rows_in": None, "rows_written": None, "rows_failed": 1},
        {"collection_id": "col_b", "rows_in": None, "rows_written": None, "rows_failed": 2},
    ]
    assert len(doc["failed_documents"]) == 1 and doc["failed_documents_total"] == 3
    text = batch("status", "btch_1")
    assert "  collection col_b: ? written, 2 failed" in text.stdout
    assert "not per collection" in text.stdout


def test_timeout_leaves_the_batch_running_and_exits_4(fake: FakeBatches) -> None:
    result = batch("run", BUCKET, "--namespace", NS, "--timeout", "0")
    assert result.exit_code == 4, result.output
    assert "btch_1 PENDING" in result.stdout
    assert "featurebus batch status btch_1 --watch" in result.stderr


def test_status_finds_a_batch_by_its_id_alone_and_watch_follows_it(fake: FakeBatches) -> None:
    started = batch("run", BUCKET, "--namespace", NS, "--timeout", "0", "--json")
    assert json.loads(started.stdout)["status"] == "PENDING"
    once = batch("status", "btch_1", "--json")
    assert once.exit_code == 4 and json.loads(once.stdout)["status"] == "IN_PROGRESS"
    assert ("GET", f"/v1/tasks/{TASK_1}") in fake.calls
    watched = batch("status", "btch_1", "--watch", "--json")
    assert watched.exit_code == 1 and json.loads(watched.stdout)["failed_documents_total"] == 1
    by_bucket = batch("status", "btch_1", "--namespace", NS, "--bucket", BUCKET)
    assert by_bucket.exit_code == 1 and "COMPLETED_WITH_ERRORS" in by_bucket.stdout


def test_retry_runs_the_failed_documents_again(fake: FakeBatches) -> None:
    assert batch("run", BUCKET, "--namespace", NS, "--json").exit_code == 1
    result = batch("retry", "btch_1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["batch_id"] == "btch_2"
    again = batch("retry", "btch_2")
    assert again.exit_code == 3 and "409 batch btch_2 has no failed documents to retry" in again.stderr


def test_unknown_ids_give_the_apis_detail_and_hint(fake: FakeBatches) -> None:
    unknown = batch("status", "btch_nope")
    assert unknown.exit_code == 3 and unknown.stdout == ""
    assert "batch 'btch_nope' not found: GET /v1/tasks/task_" in unknown.stderr
    assert "hint: check the id" in unknown.stderr
    in_bucket = batch("status", "btch_nope", "--namespace", NS, "--bucket", BUCKET)
    assert in_bucket.exit_code == 3
    assert f"404 batch 'btch_nope' not found in bucket '{BUCKET}'" in in_bucket.stderr
    no_ns = batch("run", BUCKET, "--namespace", "ns_nowhere")
    assert no_ns.exit_code == 3
    assert "404 namespace 'ns_nowhere' not found" in no_ns.stderr and "hint: create it" in no_ns.stderr
    no_bucket = batch("run", "bkt_nope", "--namespace", NS)
    assert no_bucket.exit_code == 3 and "bucket 'bkt_nope' not found" in no_bucket.stderr
    no_col = batch("run", BUCKET, "--namespace", NS, "-c", "nope")
    assert no_col.exit_code == 3 and "collection 'nope' not found" in no_col.stderr
    assert fake.triggered == []


def test_a_bucket_that_feeds_no_collection_says_how_to_make_one(fake: FakeBatches) -> None:
    fake.collections["col_a"]["source"] = {"bucket_ids": ["bkt_other"]}
    result = batch("run", BUCKET, "--namespace", NS)
    assert result.exit_code == 3 and f"has bucket {BUCKET} as its source" in result.stderr
    assert "--collection" in result.stderr and fake.triggered == []


def test_usage_errors_exit_2(fake: FakeBatches) -> None:
    assert batch("run", BUCKET).exit_code == 2  # no namespace
    assert batch("status", "btch_1", "--bucket", BUCKET).exit_code == 2  # --bucket without --namespace
    assert runner.invoke(app, ["batch", "run", BUCKET, "--namespace", NS, "--every", "-1"]).exit_code == 2
    assert fake.calls == []


def test_an_unreachable_registry_names_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    monkeypatch.setattr(cli_batches, "Client", lambda url, key: Client(url, key, transport=httpx.MockTransport(refuse)))
    result = runner.invoke(app, ["batch", "status", "btch_1", "--url", "http://127.0.0.1:9", "--key", KEY])
    assert result.exit_code == 3
    assert "cannot reach the registry at http://127.0.0.1:9" in result.stderr and "FEATUREBUS_URL" in result.stderr


def test_live_bars_draw_each_collection_with_its_counts() -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    view = {
        "batch_id": "btch_1",
        "status": "IN_PROGRESS",
        "collection_ids": ["col_a"],
        "rows_in": 10,
        "rows_written": 6,
        "rows_failed": 1,
        "frames_total": 2,
        "frames_done": 1,
    }
    with LiveBars(console) as bars:
        bars.show(view)
        bars.show(view | {"status": "COMPLETED_WITH_ERRORS", "rows_written": 9, "frames_done": 2})
    drawn = out.getvalue()
    assert "col_a" in drawn and "10/10" in drawn and "9 written" in drawn and "1 failed" in drawn
    assert "COMPLETED_WITH_ERRORS" in drawn


def test_live_bars_draw_a_bar_per_collection_from_the_registrys_counts() -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)

    def each(a: tuple[int, int, int], b: tuple[int, int, int]) -> list[dict[str, Any]]:
        keys = ("rows_in", "rows_written", "rows_failed")
        return [{"collection_id": c, **dict(zip(keys, n, strict=True))} for c, n in (("col_a", a), ("col_b", b))]

    view = {
        "batch_id": "btch_1",
        "status": "IN_PROGRESS",
        "collection_ids": ["col_a", "col_b"],
        "rows_in": 10,
        "rows_written": 3,
        "rows_failed": 0,
        "frames_total": 4,
        "frames_done": 2,
        "collections": each((2, 2, 0), (1, 1, 0)),
    }
    with LiveBars(console) as bars:
        bars.show(view)
        bars.show(
            view | {"status": "COMPLETED_WITH_ERRORS", "frames_done": 4, "collections": each((5, 5, 0), (5, 4, 1))}
        )
    drawn = out.getvalue()
    assert "2/? rows" in drawn  # no total while the collection's frames are still to come
    assert "col_b" in drawn and "5/5" in drawn and "4 written" in drawn and "1 failed" in drawn
    assert "(2 collections)" not in drawn  # no longer one bar for the whole batch


def test_change_lines_print_only_changes(capsys: pytest.CaptureFixture[str]) -> None:
    lines = ChangeLines()
    view = {"batch_id": "b", "status": "PENDING", "rows_in": 0, "rows_written": 0, "rows_failed": 0}
    for _ in range(3):
        lines.show(view)
    lines.show(view | {"status": "IN_PROGRESS"})
    assert len(capsys.readouterr().err.splitlines()) == 2
