"""realtime.py as the guide writes it loads once and answers; each way it can go wrong says why."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from featurebus.common.events import ReasonCode
from featurebus.runtime import PluginError
from featurebus.runtime.realtime import RealtimeHost

MANIFEST = """
feature_extractor_name = "toy"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 3, "distance_metric": "cosine"}]
"""

# The guide's Quick Start realtime.py, with a toy model instead of a sentence transformer.
GUIDE_STYLE = """
from shared.plugins.inference.serve import BaseInferenceService

class InferenceService(BaseInferenceService):
    loads = 0

    def __init__(self):
        super().__init__()
        self._model = None

    async def __call__(self, inputs: dict, parameters: dict) -> dict:
        if self._model is None:
            InferenceService.loads += 1
            self._model = lambda text: [float(len(text)), 1.0]
        text = inputs.get("text", "")
        embedding = [*self._model(text), parameters.get("bias", 0.0)]
        return {"embedding": embedding, "sentiment": "positive" if len(text) > 50 else "neutral"}
"""


def load(tmp_path: Path, realtime: str | None, manifest: str = MANIFEST) -> RealtimeHost:
    plugin = tmp_path / "toy"
    plugin.mkdir()
    (plugin / "manifest.py").write_text(manifest)
    (plugin / "pipeline.py").write_text("def build_steps(*a, **k):\n    return {'steps': []}\n")
    if realtime is not None:
        (plugin / "realtime.py").write_text(textwrap.dedent(realtime))
    return RealtimeHost.load(plugin, plugin_id=f"toy_{tmp_path.name}")


def refusal(tmp_path: Path, realtime: str | None) -> PluginError:
    with pytest.raises(PluginError) as caught:
        load(tmp_path, realtime).embed_query("hello")
    return caught.value


def test_the_guides_service_answers_requests_and_queries_with_one_model_load(tmp_path: Path) -> None:
    host = load(tmp_path, GUIDE_STYLE)
    assert host.infer({"text": "abc"}, {"bias": 2.0}) == {"embedding": [3.0, 1.0, 2.0], "sentiment": "neutral"}
    assert host.embed_query("hello") == {"vec": [5.0, 1.0, 0.0]}
    assert type(host.service).loads == 1


def test_run_inference_is_the_guides_other_spelling(tmp_path: Path) -> None:
    host = load(
        tmp_path,
        """
        from shared.plugins.inference.serve import BaseInferenceService

        class InferenceService(BaseInferenceService):
            async def run_inference(self, inputs, parameters):
                return {"vec": [1, 2, 3]}
        """,
    )
    assert host.embed_query("q") == {"vec": [1.0, 2.0, 3.0]}  # the feature's own key wins over "embedding"


def test_a_plugin_without_realtime_py_has_no_endpoint(tmp_path: Path) -> None:
    err = refusal(tmp_path, None)
    assert err.reason is ReasonCode.PLUGIN_LOAD_FAILED and "no realtime.py" in err.message
    assert "batch_only" in (err.hint or "")


@pytest.mark.parametrize(
    ("realtime", "reason", "words"),
    [
        ("import nope_not_installed\n", ReasonCode.PLUGIN_LOAD_FAILED, "importing realtime.py failed"),
        ("class Other: pass\n", ReasonCode.PLUGIN_LOAD_FAILED, "no class InferenceService"),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    def __init__(self):\n        raise RuntimeError('no GPU')\n",
            ReasonCode.PLUGIN_LOAD_FAILED,
            "InferenceService.__init__ failed",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        return [1, 2, 3]\n",
            ReasonCode.PLUGIN_EXCEPTION,
            "not a dict",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        return {'vector': [1, 2, 3]}\n",
            ReasonCode.MISSING_OUTPUT_COLUMN,
            "without 'embedding'",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        return {'embedding': [1, 2]}\n",
            ReasonCode.DIMENSION_MISMATCH,
            "2-dimensional",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        return {'embedding': [1, float('nan'), 3]}\n",
            ReasonCode.INVALID_VECTOR,
            "NaN",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        return {'embedding': [0.0, 0.0, 0.0]}\n",
            ReasonCode.ZERO_VECTOR,
            "all zeros",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        raise ValueError('bad input')\n",
            ReasonCode.PLUGIN_EXCEPTION,
            "bad input",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n"
            "        from transformers import AutoModel\n"
            "        AutoModel.from_pretrained('acme/no-such-model', local_files_only=True)\n",
            ReasonCode.MODEL_NOT_AVAILABLE,
            "model 'acme/no-such-model' is not available to this worker",
        ),
        (
            "from shared.plugins.inference.serve import BaseInferenceService\n"
            "from shared.plugins.sdk import LLMError\n"
            "class InferenceService(BaseInferenceService):\n"
            "    async def __call__(self, inputs, parameters):\n        raise LLMError('provider answered 503')\n",
            ReasonCode.LLM_ERROR,
            "LLMError: provider answered 503",
        ),
    ],
    ids=[
        "import",
        "no-class",
        "init",
        "not-a-dict",
        "no-vector",
        "dimensions",
        "nan",
        "zeros",
        "raises",
        "no-model",
        "llm-error",
    ],
)
@pytest.mark.usefixtures("offline_models")
def test_every_broken_service_fails_loudly(tmp_path: Path, realtime: str, reason: ReasonCode, words: str) -> None:
    err = refusal(tmp_path, realtime)
    assert err.reason is reason and words in err.message, err


def test_numpy_answers_are_turned_into_json(tmp_path: Path) -> None:
    host = load(
        tmp_path,
        """
        import numpy as np
        from shared.plugins.inference.serve import BaseInferenceService

        class InferenceService(BaseInferenceService):
            async def __call__(self, inputs, parameters):
                return {"embedding": np.ones(3, dtype=np.float32), "score": np.float32(0.5)}
        """,
    )
    assert host.infer({"text": "x"}, {}) == {"embedding": [1.0, 1.0, 1.0], "score": 0.5}
