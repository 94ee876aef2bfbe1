"""The builtin text embedder's fast path (ONNX Runtime) runs inside the plugin sandbox, as the
guide's ``get_batch_service`` plugins use it, and gives the vectors it gives outside."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from inference_twins import frame, toy_archive

from featurebus.common.frames import from_parquet
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.sdk import get_batch_service

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "builtin_text"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "embedding", "embedding_dim": 384, "distance_metric": "cosine"}]
"""
PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from shared.inference.registry import get_batch_service

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    MiniLM = get_batch_service("sentence-transformers/all-MiniLM-L6-v2")
    steps = [StepDefinition(service_class=MiniLM, config={"text_column": "data", "output_column_name": "embedding"})]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="builtin_text", version="1.0.0", steps=steps))}
"""
TEXTS = ["Penguins live in Antarctica.", "Investors sold their shares.", "hi"]


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxedWorker]:
    config = SandboxConfig(memory_bytes=2 * 1024**3, frame_cpu_seconds=60)
    w = SandboxedWorker(
        "builtin_text_1_0_0", toy_archive(PIPELINE, MANIFEST), None, str(tmp_path_factory.mktemp("work")), None, config
    )
    assert w.load_error is None, w.load_error
    yield w
    w.close()


def test_the_fast_path_embeds_inside_the_sandbox_as_outside(worker: SandboxedWorker) -> None:
    output = worker.process(frame(TEXTS))
    assert output.failures == [], output.failures
    assert output.vectors_parquet is not None
    inside = np.array(from_parquet(output.vectors_parquet)["embedding"].tolist())
    outside = get_batch_service("all-MiniLM-L6-v2")()(pd.DataFrame({"data": TEXTS}))
    np.testing.assert_allclose(inside, np.array(outside["embedding"].tolist()), atol=1e-5)
