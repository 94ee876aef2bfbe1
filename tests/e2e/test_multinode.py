"""The same inference code on a two-node Ray cluster (``ray start --head`` plus a second node) via RAY_ADDRESS.

The cluster runs on this machine, each node a ``ray start`` of this test with one CPU, all on
127.0.0.1 (see ``_ray_cluster.py``). Which node an actor runs on is read two ways: Ray's own word
(the node id in a pool actor's stats) and the process tree (an actor's process descends from the
``ray start`` of the node it runs on).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stack import LocalStack, free_port, running_pid

from services import LocalServices

from ._client import Api, small_frames_plugin
from ._ray_cluster import RAY_ENV, RayCluster, actor_pids
from ._retrieve import all_document_ids

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ACTOR_CLASS = "PluginActor"
PROBE = Path(__file__).resolve().parent / "_pool_probe.py"
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
ROWS = 96
MIB = 2**20


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    cluster = RayCluster(tmp_path_factory.mktemp("ray-cluster"), nodes=2, cpus_per_node=1)
    started = time.monotonic()
    try:
        cluster.start()
        rss = cluster.rss_bytes()
        print(
            f"\ntwo-node Ray cluster up in {time.monotonic() - started:.1f}s at {cluster.address}; idle RSS "
            + ", ".join(f"{name} {b / MIB:.0f} MiB" for name, b in rss.items())
            + f", total {sum(rss.values()) / MIB:.0f} MiB"
        )
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def on_cluster(
    local_stack: LocalStack, ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalServices, Api]]:
    """The five services, inference joining the cluster through RAY_ADDRESS (its own topics and database)."""
    prefix = f"e2erc{secrets.token_hex(3)}."
    admin_key = "fb_" + secrets.token_urlsafe(24)
    env = {
        **local_stack.env(),
        "FEATUREBUS_TOPIC_PREFIX": prefix,
        "FEATUREBUS_MONGO_DB": f"fb_{prefix.rstrip('.')}",
        "FEATUREBUS_ADMIN_API_KEY": admin_key,
        "FEATUREBUS_LOG_LEVEL": "INFO",
        "RAY_ADDRESS": ray_cluster.address,  # nothing else: the service sets up Ray's environment itself
    }
    services = LocalServices(tmp_path_factory.mktemp("platform-on-cluster"), env, http_port=free_port())
    try:
        services.start()
        joined = f"joined the Ray cluster at {ray_cluster.address}"
        Api.wait(lambda: services.log("inference"), lambda log: joined in log, timeout=120, every=0.5)
        yield services, Api(services.base_url, admin_key)
    finally:
        services.stop()


def test_one_pool_puts_its_two_actors_on_both_nodes(ray_cluster: RayCluster, tmp_path: Path) -> None:
    """main.start_ray joins via RAY_ADDRESS; a pool of max_concurrency=2 given two frames at once spans the nodes."""
    token = secrets.token_hex(8)
    env = {
        **os.environ,
        **RAY_ENV,
        "RAY_ADDRESS": ray_cluster.address,
        "FEATUREBUS_DATA_DIR": str(tmp_path),
        "FEATUREBUS_S3_REGION": token,
        "FEATUREBUS_ADMIN_API_KEY": "fb_never_sent_to_workers",
    }
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, str(PROBE)], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"\npool probe (join, 2 actors, 2 frames): {time.monotonic() - started:.1f}s")

    assert report["rows_embedded"] == [4, 4]
    stats = report["stats"]
    assert len(stats) == 2 and len(report["nodes"]) == 2
    assert {s["node_id"] for s in stats} == set(report["nodes"])  # one actor on each node
    assert len({s["pid"] for s in stats}) == 2 and all(report["plugin_dirs_exist"])
    # Both frames ran in the pool's actors, one in each (the plugin's file lies in that actor's
    # own unpacked dir); the sandboxed plugin got the offline model cache, but neither the
    # object-store settings its actor has (the FEATUREBUS_S3_REGION token) nor any API key.
    dirs = sorted(s["plugin_dir"] for s in stats)
    assert sorted(next(d for d in dirs if seen["file"].startswith(d + "/")) for seen in report["seen"]) == dirs
    models = str((tmp_path / "models").resolve())
    assert {seen["env"] for seen in report["seen"]} == {f"||{models}|1"}


def test_the_service_on_the_cluster_indexes_every_document_once(
    ray_cluster: RayCluster, on_cluster: tuple[LocalServices, Api]
) -> None:
    services, api = on_cluster
    ns = api.namespace(f"cluster-{uuid.uuid4().hex[:6]}")
    api.deploy_batch_plugin(ns, "text_embed", "1.0.0", small_frames_plugin())
    texts = [f"Field report {i}: sensor {i % 11} read {i * 3} units at dawn." for i in range(ROWS)]
    bucket = api.text_bucket(ns, "notes", texts)
    # Two collections of one plugin, configured differently: two pools of up to two actors each.
    # So there are actors on both nodes even where frames run one at a time; where they run side by
    # side (FEATUREBUS_FRAME_WORKERS), each pool grows to two and spreads as well.
    collections = [
        api.call(
            "POST",
            f"/v1/namespaces/{ns}/collections",
            json={
                "name": f"notes-{size}",
                "feature_extractors": [
                    {
                        "feature_extractor_name": "text_embed",
                        "version": "1.0.0",
                        "parameters": {"encode_batch_size": size},
                    }
                ],
                "source": {"type": "bucket", "bucket_ids": [bucket]},
            },
        )["collection_id"]
        for size in (8, 16)
    ]
    started = time.monotonic()
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": collections}
    )["batch_id"]
    done = api.wait_batch(ns, bucket, batch_id, timeout=480)
    elapsed = time.monotonic() - started
    assert done["status"] == "COMPLETED", done
    assert done["rows_in"] == done["rows_written"] == 2 * ROWS and done["rows_failed"] == 0, done

    actors = ray_cluster.actors(ACTOR_CLASS)
    rss = ray_cluster.rss_bytes()
    print(
        f"\nbatch of {ROWS} texts x 2 collections (8-row frames) on the cluster: {elapsed:.1f}s; "
        f"actors by node { ({n: len(p) for n, p in actors.items()}) }; cluster RSS with them "
        + ", ".join(f"{name} {b / MIB:.0f} MiB" for name, b in rss.items())
        + f", total {sum(rss.values()) / MIB:.0f} MiB"
    )
    assert all(actors[name] for name in ray_cluster.names), actors
    # The service is a Ray driver only: no Ray of its own, no plugin process under it.
    inference = psutil.Process(running_pid("svc-inference", services.data_dir))  # type: ignore[arg-type]
    below = inference.children(recursive=True)
    assert not actor_pids(below, ACTOR_CLASS) and not [p for p in below if p.name() == "raylet"]

    for collection in collections:
        ids = all_document_ids(api, ns, collection, FEATURE_URI, "sensor reading")
        assert len(ids) == len(set(ids)) == ROWS
