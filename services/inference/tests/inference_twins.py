"""In-memory stand-ins for the inference unit tests."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from featurebus.common.objectstore import ChecksumMismatch, sha256_hex
from featurebus.inference.worker import PluginWorker, WorkerOutput

TOY_MANIFEST = """
feature_extractor_name = "toy"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2, "distance_metric": "cosine"}]
"""
TOY_PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
LOADS = []

class Length:
    def __init__(self, config):
        LOADS.append(1)

    def __call__(self, batch):
        batch["vec"] = [[float(len(t)), 1.0] for t in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Length)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""


def toy_archive(pipeline: str = TOY_PIPELINE) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("toy/manifest.py", TOY_MANIFEST)
        zf.writestr("toy/pipeline.py", pipeline)
    return buffer.getvalue()


class MemoryStore:
    bucket = "featurebus"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def put_bytes(self, key: str, data: bytes, content_type: str = "") -> str:
        self.objects[self.uri(key)] = data
        return self.uri(key)

    async def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        data = self.objects[uri]
        if sha256 is not None and sha256_hex(data) != sha256:
            raise ChecksumMismatch(uri)
        return data

    async def ensure_bucket(self) -> None:
        pass

    async def close(self) -> None:
        pass


class InProcessPools:
    """Pools without Ray: one PluginWorker per plugin version, in this process (tests only)."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.workers: dict[str, PluginWorker] = {}

    def _worker(self, plugin: Any, archive: bytes) -> PluginWorker:
        key = plugin.plugin_id + plugin.archive_sha256
        if key not in self.workers:
            self.workers[key] = PluginWorker(plugin.plugin_id, archive, plugin.parameters, self.work_dir)
        return self.workers[key]

    async def process(self, plugin: Any, archive: bytes, frame: bytes, timeout: float) -> WorkerOutput:
        return self._worker(plugin, archive).process(frame)

    async def embed(self, plugin: Any, archive: bytes, text: str, timeout: float) -> dict[str, list[float]]:
        return self._worker(plugin, archive).embed(text)

    async def stats(self, plugin: Any) -> list[dict[str, Any]]:
        return [w.stats() for w in self.workers.values()]
