"""A plugin's Ray worker process killed (SIGKILL) in the middle of a batch: nothing lost, nothing twice.

The inference service of the test platform starts Ray inside itself, so every Ray process is a
descendant of that service's process; the actor killed is one of those, found in its process tree
while its title says it runs a frame (``ray::PluginActor.process``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest
from stack import running_pid

from ._client import Api, small_frames_plugin
from ._ray_cluster import actor_pids
from ._retrieve import all_document_ids

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACTOR_CLASS = "PluginActor"
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
ROWS = 200


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"kill-{uuid.uuid4().hex[:6]}")
    api.deploy_batch_plugin(ns, "text_embed", "1.0.0", small_frames_plugin())  # 25 frames, up to two actors
    texts = [f"Shift log {i}: pump {i % 17} pressure {i * 5} kPa, valve {i % 3} open." for i in range(ROWS)]
    bucket = api.text_bucket(ns, "logs", texts)
    collection = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "logs",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    inference = psutil.Process(running_pid("svc-inference", platform.services.data_dir))  # type: ignore[arg-type]
    before = set(actor_pids(inference.children(recursive=True), ACTOR_CLASS))  # warm actors of other tests

    started = time.monotonic()
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [collection]}
    )["batch_id"]
    path = f"/v1/namespaces/{ns}/buckets/{bucket}/batches/{batch_id}"
    Api.wait(lambda: api.call("GET", path), lambda b: b.get("frames_done", 0) >= 2, timeout=240, every=0.1)

    # An actor of this batch's pool, caught running a frame.
    victim = Api.wait(lambda: busy_actor(inference, before), lambda pid: pid is not None, timeout=60, every=0.05)
    in_flight = api.call("GET", path)
    assert in_flight["status"] == "IN_PROGRESS", in_flight
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    done = api.wait_batch(ns, bucket, batch_id, timeout=400)
    print(
        f"\n{ROWS} texts, 8-row frames: actor {victim} killed after {killed_at - started:.1f}s at "
        f"{in_flight.get('frames_done')} frames done; batch {done['status']} after {time.monotonic() - started:.1f}s"
    )
    assert done["status"] == "COMPLETED", done
    assert done["rows_in"] == done["rows_written"] == ROWS and done["rows_failed"] == 0, done
    assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
    # The pool noticed the death and replaced the actor (which then ran frames).
    assert "an actor died; it is replaced on demand" in platform.log("inference")
    now = set(actor_pids(inference.children(recursive=True), ACTOR_CLASS)) - before
    assert now and victim not in now

    ids = all_document_ids(api, ns, collection, FEATURE_URI, "pump pressure")
    assert len(ids) == len(set(ids)) == ROWS


def busy_actor(inference: psutil.Process, exclude: set[int]) -> int | None:
    """The PID of an actor under ``inference`` (not in ``exclude``) whose title says it runs a frame now."""
    for proc in inference.children(recursive=True):
        if proc.pid in exclude:
            continue
        try:
            if proc.cmdline()[:1] == [f"ray::{ACTOR_CLASS}.process"]:
                return proc.pid
        except psutil.Error:
            continue
    return None
