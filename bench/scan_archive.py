"""Time the plugin scan of a 1,000-file archive against a baseline measured in the same run.

    .venv/bin/python bench/scan_archive.py

The baseline is the least any AST scanner must do: read every member of the zip and
``ast.parse`` every .py file. The ratio says what the checks themselves cost on top of that.
"""

from __future__ import annotations

import ast
import io
import json
import statistics
import time
import zipfile

from featurebus.scan import scan_archive

MODULE = '''import numpy as np
import pandas as pd
from dataclasses import dataclass


@dataclass
class Config{i}:
    threshold: float = 0.{i}
    name: str = "step_{i}"


class Step{i}:
    """A processor with some body so the parser has work to do."""

    def __init__(self, config=None, **kwargs):
        self.config = config or Config{i}()
        self._model = None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = batch["data"].fillna("").tolist()
        lengths = np.array([len(t) for t in texts], dtype=np.float32)
        batch["score_{i}"] = (lengths / (lengths.max() or 1.0)).tolist()
        batch["label_{i}"] = ["long" if x > self.config.threshold else "short" for x in batch["score_{i}"]]
        return batch
'''
MANIFEST = """feature_extractor_name = "big"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "big_embedding", "embedding_dim": 8, "distance_metric": "cosine"}]
"""
PIPELINE = """from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from .processors.step_0 import Step0


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Step0)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="big", version="1.0.0", steps=steps))}
"""


def big_archive(files: int = 1000) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big/manifest.py", MANIFEST)
        zf.writestr("big/pipeline.py", PIPELINE)
        zf.writestr("big/processors/__init__.py", "")
        for i in range(files - 3):
            zf.writestr(f"big/processors/step_{i}.py", MODULE.format(i=i))
    return buffer.getvalue()


def baseline(data: bytes) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            body = zf.read(info)
            if info.filename.endswith(".py"):
                ast.parse(body)


def median_seconds(fn, data: bytes, runs: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn(data)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    data = big_archive()
    report = scan_archive(data)
    assert report.passed, report.lines()[:5]
    base = median_seconds(baseline, data)
    scan = median_seconds(lambda d: scan_archive(d), data)
    print(
        json.dumps(
            {
                "files": 1000,
                "archive_bytes": len(data),
                "scan_s": round(scan, 3),
                "baseline_read_and_parse_s": round(base, 3),
                "ratio_scan_over_baseline": round(scan / base, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
