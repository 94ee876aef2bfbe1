"""Real Ray (started here, 2 CPUs): a warm pool loads its plugin once, in a worker process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from inference_twins import TOY_PIPELINE, frame, toy_archive

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginRef, ReasonCode
from featurebus.common.frames import from_parquet
from featurebus.common.objectstore import sha256_hex
from featurebus.inference.pools import ResourcesUnavailable
from featurebus.sdk.model_loading import offline_env, seed_offline_models

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plugins" / "text_embed"


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray

    # As main.start_ray does: the offline model cache, in the environment the workers inherit.
    models = tmp_path_factory.mktemp("models")
    seed_offline_models(models)
    os.environ.update(offline_env(models))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Short: Ray's socket paths under it must stay below 108 characters.
    temp = f"/tmp/fb-ray-test-{os.getpid()}"
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


def ref(archive: bytes, plugin_id: str = "toy_1_0_0", **update: object) -> PluginRef:
    plugin = PluginRef(
        plugin_id=plugin_id,
        name=plugin_id.rsplit("_", 3)[0],
        version="1.0.0",
        archive_uri="s3://featurebus/unused",
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
    )
    return plugin.model_copy(update=update)


async def test_two_frames_one_pool_one_model_load_outside_this_process(ray_local: None, tmp_path: Path) -> None:
    from featurebus.inference.ray_actors import RayPools

    pid_pipeline = "import os\n" + TOY_PIPELINE.replace(
        'batch["vec"] = ', 'batch["pid"] = os.getpid()\n        batch["vec"] = '
    )
    archive = toy_archive(pid_pipeline)
    plugin = ref(archive)
    pools = RayPools(tmp_path, actor_num_cpus=0.5, idle_seconds=600)
    started = time.perf_counter()
    first = await pools.process(plugin, lambda: archive, frame(["a", "bb"]), timeout=120)
    print(f"\nactor start + plugin load + first frame: {time.perf_counter() - started:.2f}s")
    second = await pools.process(plugin, lambda: archive, frame(["ccc"]), timeout=120)
    assert (first.rows_embedded, second.rows_embedded) == (2, 1)
    # A query goes to the same warm actor.
    assert await pools.embed(plugin, lambda: archive, "abcd", timeout=60) == {"vec": [4.0, 1.0]}
    [stats] = await pools.stats(plugin)
    assert (stats["model_loads"], stats["frames"], stats["queries"]) == (1, 2, 1)
    assert pools.size(plugin) == 1
    payload = json.loads(from_parquet(first.vectors_parquet)["payload"][0])  # type: ignore[arg-type]
    assert payload["pid"] != os.getpid()  # the plugin ran in a Ray worker, not here

    # A plugin asking for a GPU on this GPU-less cluster fails at once, naming the fix.
    gpu = ref(archive, plugin_id="gpu_1_0_0", compute_profile=ComputeProfile(resource_type="gpu"))
    with pytest.raises(ResourcesUnavailable, match="resource_type"):
        await pools.process(gpu, lambda: archive, frame(["a"]), timeout=5)
    await pools.close()


async def test_a_load_failure_crosses_the_process_boundary_as_plugin_load_failed(
    ray_local: None, tmp_path: Path
) -> None:
    from featurebus.inference.ray_actors import RayPools
    from featurebus.runtime import PluginError

    archive = toy_archive(TOY_PIPELINE.replace("import PipelineDefinition", "import Nope"))
    plugin = ref(archive, plugin_id="bad_1_0_0")
    pools = RayPools(tmp_path, actor_num_cpus=0.5, idle_seconds=600)
    output = await pools.process(plugin, lambda: archive, frame(["a", "b"]), timeout=60)
    assert output.load_failed and [f.reason for f in output.failures] == [ReasonCode.PLUGIN_LOAD_FAILED] * 2
    with pytest.raises(PluginError, match="Nope") as caught:
        await pools.embed(plugin, lambda: archive, "q", timeout=60)
    assert caught.value.reason == ReasonCode.PLUGIN_LOAD_FAILED
    assert pools.size(plugin) == 1  # the failed load is cached in its actor, not repeated per frame
    await pools.close()


def _zip_dir(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and "tests" not in path.parts:
                zf.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")
    return buffer.getvalue()


@pytest.mark.skipif(not EXAMPLE.exists(), reason="examples/plugins/text_embed is not in this checkout")
async def test_the_example_plugin_embeds_64_texts_with_the_real_model(ray_local: None, tmp_path: Path) -> None:
    from featurebus.inference.ray_actors import RayPools

    archive = _zip_dir(EXAMPLE)
    feature = FeatureSpec(feature_name="text_embed_v1_embedding", embedding_dim=384)
    plugin = ref(archive, plugin_id="text_embed_1_0_0", features=[feature])
    pools = RayPools(tmp_path, actor_num_cpus=0.5, idle_seconds=600)
    texts = [f"sentence number {i} about vectors, plugins and search" for i in range(64)]
    started = time.perf_counter()
    cold = await pools.process(plugin, lambda: archive, frame(texts), timeout=300)
    cold_s = time.perf_counter() - started
    started = time.perf_counter()
    # A query embedded while a frame runs, on the same actor (two calls at once).
    warm, query = await asyncio.gather(
        pools.process(plugin, lambda: archive, frame(texts), timeout=120),
        pools.embed(plugin, lambda: archive, "vectors", timeout=120),
    )
    warm_s = time.perf_counter() - started
    [stats] = await pools.stats(plugin)
    print(
        f"\ntext_embed: load {stats['load_seconds']:.2f}s; cold frame (64) {cold_s:.2f}s; warm frame + query {warm_s:.2f}s"
    )
    assert (cold.rows_embedded, warm.rows_embedded) == (64, 64)
    assert len(query["text_embed_v1_embedding"]) == 384
    vectors = from_parquet(warm.vectors_parquet)  # type: ignore[arg-type]
    assert len(vectors["text_embed_v1_embedding"][0]) == 384
    assert (stats["model_loads"], stats["frames"], stats["queries"]) == (1, 2, 1)
    assert pools.size(plugin) == 1  # compute_profile.max_concurrency = 1
    await pools.close()
