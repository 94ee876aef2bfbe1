"""Real Ray: a warm pool runs many frames with one plugin load, in a worker process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from inference_twins import toy_archive
from test_inference import frame

from featurebus.common.events import FeatureSpec, PluginRef
from featurebus.common.objectstore import sha256_hex
from featurebus.inference.pools import RayPools

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=f"/tmp/fb-ray-test-{os.getpid()}", log_to_driver=False)
    yield
    ray.shutdown()


async def test_pool_stays_warm_across_frames_and_runs_outside_this_process(ray_local: None, tmp_path: Path) -> None:
    archive = toy_archive(
        "import os\n"
        + __import__("inference_twins").TOY_PIPELINE.replace(
            'batch["vec"] = ', 'batch["pid"] = os.getpid()\n        batch["vec"] = '
        )
    )
    plugin = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri="s3://x/y",
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
    )
    pools = RayPools(tmp_path, actor_num_cpus=0.5, idle_seconds=600)
    outputs = [await pools.process(plugin, archive, frame(["a", "bb"]), timeout=120) for _ in range(3)]
    assert all(o.rows_embedded == 2 for o in outputs)
    vector = await pools.embed(plugin, archive, "abcd", timeout=60)
    assert vector == {"vec": [4.0, 1.0]}
    [stats] = await pools.stats(plugin)
    assert stats["model_loads"] == 1 and stats["frames"] == 3

    import json

    from featurebus.common.frames import from_parquet

    payload = json.loads(from_parquet(outputs[0].vectors_parquet)["payload"][0])  # type: ignore[arg-type]
    assert payload["pid"] != os.getpid()  # the plugin ran in a Ray worker, not here
