"""Killing a running task (``DELETE /v1/tasks/{task_id}``) stops its batch across the services.

A batch of many small, slow frames is cancelled after its first frames: it is CANCELED at once,
inference acknowledges its queued frames without running them, the indexer writes nothing more,
the number of indexed documents stops growing, and the counts reconcile with the rows that never
ran counted as ``rows_cancelled``.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

import pytest

from ._client import EXAMPLES, Api, zip_plugin
from ._retrieve import all_document_ids
from .test_faults import replay_batch, wait_consumed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 400  # 50 frames of 8 rows, each held up half a second: ~15 s of work on two actors
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"


def slow_frames_plugin() -> bytes:
    """The example plugin with 8-row frames, two actors, and a frame that takes at least 0.5 s."""
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    core = (EXAMPLES / "text_embed" / "processors" / "core.py").read_text()
    call = "    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:\n"
    assert '"batch_size": 64' in manifest and '"max_concurrency": 1' in manifest and call in core
    manifest = manifest.replace('"batch_size": 64', '"batch_size": 8').replace(
        '"max_concurrency": 1', '"max_concurrency": 2'
    )
    core = "import time\n" + core.replace(call, call + "        time.sleep(0.5)\n")
    return zip_plugin(EXAMPLES / "text_embed", {"manifest.py": manifest, "processors/core.py": core})


def settled(fetch, quiet_s: float, timeout: float) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """The batch once ``frames_done`` has not moved for ``quiet_s`` (in-flight frames may finish)."""
    deadline = time.monotonic() + timeout
    last, since = fetch(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, f"still moving after {timeout}s: {last}"
        time.sleep(0.5)
        now = fetch()
        if now["frames_done"] != last["frames_done"]:
            last, since = now, time.monotonic()
    return last  # type: ignore[no-any-return]


@dataclass
class Cancelled:
    """A batch cancelled after its first frames, once nothing of it moves any more."""

    ns: str
    bucket: str
    collection: str
    batch_id: str
    task_id: str
    final: dict  # type: ignore[type-arg]

    def batch(self, api: Api) -> dict:  # type: ignore[type-arg]
        return api.call("GET", f"/v1/namespaces/{self.ns}/buckets/{self.bucket}/batches/{self.batch_id}")  # type: ignore[no-any-return]

    def indexed(self, api: Api) -> int:
        return len(set(all_document_ids(api, self.ns, self.collection, FEATURE_URI, "valve checked")))


@pytest.fixture(scope="module")
def cancelled(platform, api: Api) -> Cancelled:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"cancel-{uuid.uuid4().hex[:6]}")
    api.deploy_batch_plugin(ns, "text_embed", "1.0.0", slow_frames_plugin())
    texts = [f"Shift log {i}: valve {i * 3} checked in hall {i % 7}." for i in range(ROWS)]
    bucket = api.text_bucket(ns, "notes", texts)
    collection = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "notes",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    triggered = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [collection]}
    )
    c = Cancelled(ns, bucket, collection, triggered["batch_id"], triggered["task_id"], {})
    started = Api.wait(lambda: c.batch(api), lambda b: b["frames_done"] >= 2, 240, every=0.2)
    assert started["status"] == "IN_PROGRESS", started

    killed = api.call("DELETE", f"/v1/tasks/{c.task_id}")
    assert (killed["success"], killed["status"], killed["task_id"]) == (True, "CANCELED", c.task_id), killed
    c.final = settled(lambda: c.batch(api), quiet_s=6, timeout=120)
    return c


def test_a_cancelled_task_stops_its_batch_and_its_counts_reconcile(platform, api: Api, cancelled: Cancelled) -> None:  # type: ignore[no-untyped-def]
    c, final = cancelled, cancelled.final
    assert api.call("DELETE", f"/v1/tasks/{c.task_id}")["status"] == "CANCELED"  # idempotent
    assert final["status"] == "CANCELED" and final["cancelled_at"] is not None, final
    assert final["rows_in"] == ROWS and final["frames_total"] == ROWS // 8, final
    assert final["rows_in"] == final["rows_written"] + final["rows_failed"] + final["rows_cancelled"], final
    assert final["rows_cancelled"] > 0 and final["frames_done"] < final["frames_total"], final

    # What was written is searchable, and nothing more is written afterwards.
    indexed = c.indexed(api)
    assert indexed == final["rows_written"], (indexed, final)
    time.sleep(5)
    assert c.indexed(api) == indexed and c.batch(api) == final

    task = api.call("GET", f"/v1/tasks/{c.task_id}")
    assert (task["status"], task["rows_cancelled"], task["rows_written"]) == (
        "CANCELED",
        final["rows_cancelled"],
        final["rows_written"],
    )
    # Inference saw frames of the batch still queued and did not run them.
    assert f"batch={c.batch_id} cancelled: frame" in platform.log("inference")
    assert api.call("DELETE", "/v1/tasks/task_nope", expect=404)["detail"]


def test_a_restarted_indexer_still_honours_the_cancel(platform, api: Api, cancelled: Cancelled) -> None:  # type: ignore[no-untyped-def]
    """Restarted after the cancel, the indexer reads batch.cancelled on start: a replay of the
    batch's vectors (also of frames it skipped) writes nothing and changes no count."""
    c = cancelled
    starts = len(re.findall(r"read (\d+) cancellation", platform.log("indexer")))  # earlier tests restart it too
    platform.restart("indexer")
    reads = Api.wait(
        lambda: re.findall(r"read (\d+) cancellation", platform.log("indexer")), lambda r: len(r) > starts, 120
    )
    assert int(reads[-1]) >= 1, reads  # the restarted process read the cancel from the log
    replayed = asyncio.run(replay_batch(platform.kafka_bootstrap, platform.topic("vectors.produced"), c.batch_id))
    assert replayed > 0
    asyncio.run(
        wait_consumed(platform.kafka_bootstrap, platform.topic("vectors.produced"), platform.prefix + "indexer-vectors")
    )
    assert c.indexed(api) == c.final["rows_written"] and c.batch(api) == c.final
    assert f"batch={c.batch_id} cancelled: frame" in platform.log("indexer")
