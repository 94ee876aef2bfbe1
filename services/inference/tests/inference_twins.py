"""In-memory stand-ins for the inference unit tests."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pandas as pd

from featurebus.common.frames import FRAME_COLUMNS, to_parquet
from featurebus.inference.plugin_worker import PluginWorker
from featurebus.inference.pools import ActorLost, ResourcesUnavailable, WarmPools

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


def frame(texts: list[str]) -> bytes:
    """A frame as the dispatcher writes it: the guide's columns, one text blob per row."""
    rows = []
    for i, text in enumerate(texts):
        row: dict[str, object] = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=text, blob_type="text", mime_type="text/plain", size_bytes=0)
        rows.append(row)
    return to_parquet(pd.DataFrame(rows))


def toy_archive(pipeline: str = TOY_PIPELINE, manifest: str = TOY_MANIFEST, realtime: str | None = None) -> bytes:
    """A guide-style plugin zip (``zip -r toy.zip toy/``), the same bytes on every call.

    Entries carry a fixed date: with the clock's, two calls either side of a two-second tick
    would build archives of different sha256, i.e. two plugin versions.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        files = [("toy/manifest.py", manifest), ("toy/pipeline.py", pipeline)]
        files += [("toy/realtime.py", realtime)] if realtime is not None else []
        for name, text in files:
            entry = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, text)
    return buffer.getvalue()


class InProcessActors:
    """An ActorBackend without Ray: each "actor" is a PluginWorker in this process (tests only)."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.spawned: list[PluginWorker] = []
        self.killed: list[PluginWorker] = []
        self.unavailable: str | None = None  # set → check() refuses, as for a GPU the cluster lacks

    def check(self, plugin: Any) -> None:
        if self.unavailable:
            raise ResourcesUnavailable(self.unavailable)

    def has_room(self, plugin: Any) -> bool:
        return True

    def spawn(self, plugin: Any, archive: bytes) -> PluginWorker:
        worker = PluginWorker.from_archive(plugin.plugin_id, archive, plugin.parameters, self.work_dir)
        self.spawned.append(worker)
        return worker

    async def call(self, actor: PluginWorker, method: str, *args: Any) -> Any:
        if actor in self.killed:
            raise ActorLost("killed")
        return getattr(actor, method)(*args)

    def kill(self, actor: PluginWorker) -> None:
        self.killed.append(actor)


def in_process_pools(work_dir: str) -> WarmPools:
    return WarmPools(InProcessActors(work_dir), idle_seconds=600)
