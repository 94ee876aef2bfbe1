"""Join the Ray cluster at RAY_ADDRESS as the inference service does, grow one pool to two actors, report.

    RAY_ADDRESS=127.0.0.1:PORT FEATUREBUS_DATA_DIR=DIR python tests/e2e/_pool_probe.py

Runs in a process of its own (a Ray driver, like the service; the test process stays Ray-free):
``featurebus.inference.main.start_ray`` joins the cluster, a ``RayPools`` pool of a toy plugin
with ``max_concurrency=2`` gets two frames at once (so it starts its second actor), and one JSON
line goes to stdout: each actor's stats (pid, Ray node id, unpacked plugin dir) and what the
plugin saw: its own file and its sandbox's environment.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import zipfile

import pandas as pd

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginRef
from featurebus.common.frames import FRAME_COLUMNS, from_parquet, to_parquet
from featurebus.common.objectstore import sha256_hex
from featurebus.inference.config import InferenceSettings
from featurebus.inference.main import start_ray

MANIFEST = """
feature_extractor_name = "probe"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2, "distance_metric": "cosine"}]
"""
# The step records where it runs (its file, inside the actor's own unpacked plugin dir) and what of the service's
# environment reaches it: the offline model environment only (no object-store settings, no API key).
PIPELINE = """
import os
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Probe:
    def __init__(self, config):
        pass

    def __call__(self, batch):
        batch["vec"] = [[1.0, 0.0] for _ in batch["data"]]
        batch["file"] = os.path.abspath(__file__)
        names = ("FEATUREBUS_S3_REGION", "FEATUREBUS_ADMIN_API_KEY", "HF_HOME", "HF_HUB_OFFLINE")
        batch["env"] = "|".join(os.environ.get(k, "") for k in names)
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Probe)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="probe", version="1.0.0", steps=steps))}
"""


def archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("probe/manifest.py", MANIFEST)
        zf.writestr("probe/pipeline.py", PIPELINE)
    return buffer.getvalue()


def frame(n: int) -> bytes:
    rows = []
    for i in range(n):
        row: dict[str, object] = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=f"text {i}", blob_type="text", mime_type="text/plain", size_bytes=0)
        rows.append(row)
    return to_parquet(pd.DataFrame(rows))


async def main() -> None:
    import ray

    from featurebus.inference.ray_actors import RayPools

    settings = InferenceSettings()
    start_ray(settings)
    zipped = archive()
    plugin = PluginRef(
        plugin_id="probe_1_0_0",
        name="probe",
        version="1.0.0",
        archive_uri="s3://featurebus/unused",
        archive_sha256=sha256_hex(zipped),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
        compute_profile=ComputeProfile(max_concurrency=2, actor_memory_gb=0.25),
    )
    # A tenth of a CPU each: the probe fits beside whatever else the cluster runs.
    pools = RayPools(settings.plugins_dir / "work", 0.1, 600, models=settings.node_models())
    outputs = await asyncio.gather(*(pools.process(plugin, lambda: zipped, frame(4), timeout=180) for _ in range(2)))
    stats = await pools.stats(plugin)
    seen = [
        {"file": p["file"], "env": p["env"]}
        for o in outputs
        if o.vectors_parquet
        for p in (json.loads(s) for s in from_parquet(o.vectors_parquet)["payload"][:1])
    ]
    report = {
        "rows_embedded": [o.rows_embedded for o in outputs],
        "stats": stats,
        "plugin_dirs_exist": [bool(s["plugin_dir"]) and os.path.isdir(s["plugin_dir"]) for s in stats],
        "seen": seen,
        "nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
    }
    await pools.close()
    ray.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    asyncio.run(main())
