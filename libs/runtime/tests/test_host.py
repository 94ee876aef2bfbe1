"""The plugin host accounts for every row: each guide pitfall becomes a reason code and a hint."""

from __future__ import annotations

import io
import textwrap
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from featurebus.common.events import ReasonCode
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime import PluginError, PluginHost, unpack_archive

MANIFEST = """
feature_extractor_name = "toy"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 3, "distance_metric": "cosine"}]
"""

PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps, RowCondition
from .processors.core import Processor

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Processor, config=extractor_request.extractor_config.parameters)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""


def make_plugin(root: Path, body: str, pipeline: str = PIPELINE, manifest: str = MANIFEST) -> Path:
    plugin = root / "toy"
    (plugin / "processors").mkdir(parents=True)
    (plugin / "manifest.py").write_text(manifest)
    (plugin / "pipeline.py").write_text(pipeline)
    (plugin / "processors" / "__init__.py").write_text("")
    (plugin / "processors" / "core.py").write_text(
        "import pandas as pd\n\nclass Processor:\n    def __init__(self, config):\n        self.config = config\n\n"
        "    def __call__(self, batch):\n" + textwrap.indent(textwrap.dedent(body), "        ")
    )
    return plugin


def frame(n: int, mime: str = "text/plain") -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=f"text {i}", blob_type="text", mime_type=mime, size_bytes=0)
        rows.append(row)
    return pd.DataFrame(rows)


def load(tmp_path: Path, body: str, **kw: str) -> PluginHost:
    return PluginHost.load(make_plugin(tmp_path, body, **kw), plugin_id=f"toy_{tmp_path.name}")


def test_valid_output_becomes_vectors_and_payload(tmp_path: Path) -> None:
    host = load(tmp_path, 'batch["vec"] = [[1.0, 0.0, 0.0]] * len(batch)\nbatch["label"] = "x"\nreturn batch')
    result = host.run(frame(2))
    assert result.rows_in == 2 and result.rows_embedded == 2 and result.failures == []
    assert result.vectors["vec"].tolist() == [[1.0, 0.0, 0.0]] * 2
    payload = pd.read_json(io.StringIO(result.vectors["payload"][0]), typ="series")
    assert payload["text"] == "text 0" and payload["label"] == "x"


def test_reading_batch_text_fails_every_row_with_the_guides_hint(tmp_path: Path) -> None:
    host = load(tmp_path, 'batch["vec"] = [[1, 2, 3] for _ in batch["text"]]\nreturn batch')
    result = host.run(frame(3))
    assert result.rows_embedded == 0 and len(result.failures) == 3
    failure = result.failures[0]
    assert failure.reason is ReasonCode.PLUGIN_EXCEPTION
    assert "batch['data']" in (failure.hint or "")
    assert "processors/core.py" in failure.message


def test_processing_only_the_first_row_is_a_row_count_mismatch(tmp_path: Path) -> None:
    host = load(tmp_path, 'out = batch.iloc[:1].copy()\nout["vec"] = [[1, 2, 3]]\nreturn out')
    result = host.run(frame(4))
    assert {f.reason for f in result.failures} == {ReasonCode.ROW_COUNT_MISMATCH}
    assert len(result.failures) == 4 and "1 rows for 4" in result.failures[0].message


def test_none_and_non_numeric_vectors_fail_only_their_rows(tmp_path: Path) -> None:
    host = load(tmp_path, 'batch["vec"] = [[1, 2, 3], None, "abc", [1, float("nan"), 2]]\nreturn batch')
    result = host.run(frame(4))
    assert result.rows_embedded == 1
    assert [f.reason for f in result.failures] == [
        ReasonCode.NULL_OUTPUT,
        ReasonCode.INVALID_VECTOR,
        ReasonCode.INVALID_VECTOR,
    ]
    assert [f.document_id for f in result.failures] == ["document_id_1", "document_id_2", "document_id_3"]


@pytest.mark.parametrize(("metric", "tiny_fails"), [("cosine", True), ("dot", False), ("euclid", False)])
def test_a_zero_vector_fails_its_row_as_a_placeholder_and_under_cosine_so_does_a_tiny_one(
    tmp_path: Path, metric: str, tiny_fails: bool
) -> None:
    manifest = MANIFEST.replace('"distance_metric": "cosine"', f'"distance_metric": "{metric}"')
    host = load(
        tmp_path, 'batch["vec"] = [[0.1, 0.2, 0.3], [0, 0, 0], [0.0, 1e-20, 0.0]]\nreturn batch', manifest=manifest
    )
    result = host.run(frame(3))
    zero = result.failures[0]
    assert (zero.document_id, zero.reason) == ("document_id_1", ReasonCode.ZERO_VECTOR)
    assert "all zeros" in zero.message and "RowError" in (zero.hint or "")
    assert [f.document_id for f in result.failures[1:]] == (["document_id_2"] if tiny_fails else [])
    assert result.rows_embedded == (1 if tiny_fails else 2)


def test_missing_feature_column_names_it(tmp_path: Path) -> None:
    host = load(tmp_path, 'batch["embedding"] = [[1, 2, 3]] * len(batch)\nreturn batch')
    result = host.run(frame(2))
    assert {f.reason for f in result.failures} == {ReasonCode.MISSING_OUTPUT_COLUMN}
    assert "vec" in result.failures[0].message and "embedding" in result.failures[0].message


def test_an_exception_fails_the_frame_not_the_host(tmp_path: Path) -> None:
    host = load(tmp_path, 'raise RuntimeError("model exploded")')
    result = host.run(frame(2))
    assert [f.reason for f in result.failures] == [ReasonCode.PLUGIN_EXCEPTION] * 2
    assert "model exploded" in result.failures[0].message


def test_wrong_import_path_fails_to_load(tmp_path: Path) -> None:
    bad = PIPELINE.replace("engine.plugins.extractors.pipeline", "engine.plugins.extractor.pipelines")
    with pytest.raises(PluginError) as info:
        load(tmp_path, "return batch", pipeline=bad)
    assert info.value.reason is ReasonCode.PLUGIN_LOAD_FAILED
    assert "pipeline.py" in info.value.message


def test_row_condition_routes_rows_by_mime_type(tmp_path: Path) -> None:
    pipeline = PIPELINE.replace("config=extractor_request", "condition=RowCondition.IS_IMAGE, config=extractor_request")
    host = load(tmp_path, 'batch["vec"] = [[1, 2, 3]] * len(batch)\nreturn batch', pipeline=pipeline)
    mixed = pd.concat([frame(1, "image/png"), frame(1, "text/plain")], ignore_index=True)
    mixed.loc[1, "document_id"] = "doc_text"
    result = host.run(mixed)
    assert result.rows_embedded == 1
    assert [f.document_id for f in result.failures] == ["doc_text"]  # the text row got no vector


def test_unpack_finds_the_single_top_level_directory(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("toy/manifest.py", MANIFEST)
        zf.writestr("toy/pipeline.py", PIPELINE)
    assert unpack_archive(buffer.getvalue(), tmp_path / "x").name == "toy"
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escape.py", "x = 1")
    with pytest.raises(PluginError, match="unsafe path"):
        unpack_archive(evil.getvalue(), tmp_path / "y")


TWO_STEPS = """
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from shared.plugins import RowError


class Transcribe:
    def __init__(self, config=None):
        pass

    def __call__(self, batch):
        batch["transcription"] = [
            RowError.unreadable_asset(d, "not a WAV file") if d.endswith("1") else d.upper() for d in batch["data"]
        ]
        return batch


class Embed:
    seen = []

    def __init__(self, config=None):
        pass

    def __call__(self, batch):
        Embed.seen.append(list(batch["transcription"]))
        batch["vec"] = [[float(len(t)), 1.0, 0.0] for t in batch["transcription"]]
        return batch


class Broken:
    def __init__(self, config=None):
        raise RuntimeError("a disabled step is never built")


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [
        StepDefinition(service_class=Transcribe),
        StepDefinition(service_class=Broken, enabled=False),
        StepDefinition(service_class=Embed),
    ]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""


def test_a_row_error_fails_its_row_alone_and_later_steps_never_see_it(tmp_path: Path) -> None:
    host = load(tmp_path, "return batch", pipeline=TWO_STEPS)
    result = host.run(frame(3))
    assert result.rows_embedded == 2
    [failure] = result.failures
    assert (failure.document_id, failure.reason) == ("document_id_1", ReasonCode.UNREADABLE_ASSET)
    assert failure.message == "cannot read the asset text 1: not a WAV file"
    embed = next(step for step, _ in host.steps if type(step).__name__ == "Embed")
    assert type(embed).seen == [["TEXT 0", "TEXT 2"]]  # the transcription column passed on, minus the failed row
    assert [list(v) for v in result.vectors["vec"]] == [[6.0, 1.0, 0.0], [6.0, 1.0, 0.0]]


def test_queries_are_embedded_as_one_frame_and_a_failed_query_fails_alone(tmp_path: Path) -> None:
    body = """
    self.config.setdefault("frames", []).append(len(batch))
    batch["vec"] = [[float(len(t)), 1.0, 0.0] if t != "nan" else [float("nan")] * 3 for t in batch["data"]]
    return batch
    """
    host = load(tmp_path, body)
    answers = host.embed_queries(["abc", "nan", "hello"])
    assert answers[0] == {"vec": [3.0, 1.0, 0.0]} and answers[2] == {"vec": [5.0, 1.0, 0.0]}
    assert isinstance(answers[1], PluginError) and answers[1].reason is ReasonCode.INVALID_VECTOR
    assert host.steps[0][0].config["frames"] == [3]  # one call of the step for the three queries


GUIDE_API_PATTERN = """
from shared.plugins.sdk import concurrent_api_calls


class Processor:
    def __init__(self, config):
        self.config = config

    def __call__(self, batch):
        texts = batch["data"].fillna("").tolist()

        async def enrich(text):
            if text.endswith("1"):
                raise ConnectionError("the provider answered 503")
            return type("Answer", (), {"data": {"entities": [text]}})()

        results = concurrent_api_calls(items=texts, async_fn=enrich, max_concurrent=10)
        batch["entities"] = [r.data if r else {} for r in results]  # the guide's line
        batch["vec"] = [[1.0, 2.0, 3.0]] * len(batch)
        return batch
"""


def test_a_failed_api_call_fails_its_row_api_error_where_the_guide_would_write_an_empty_result(
    tmp_path: Path,
) -> None:
    plugin = make_plugin(tmp_path, "return batch")
    (plugin / "processors" / "core.py").write_text(GUIDE_API_PATTERN)
    result = PluginHost.load(plugin, plugin_id="toy_api").run(frame(3))
    assert result.rows_embedded == 2
    (failure,) = result.failures
    assert (failure.document_id, failure.reason) == ("document_id_1", ReasonCode.API_ERROR)
    assert "ConnectionError: the provider answered 503" in failure.message and "retry" in (failure.hint or "")


def test_a_step_that_computes_with_a_failed_call_fails_the_frame_naming_the_call(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "return batch")
    computing = GUIDE_API_PATTERN.replace(
        'batch["entities"] = [r.data if r else {} for r in results]  # the guide\'s line',
        'batch["entities"] = [len(r.data["entities"]) for r in results]',
    )
    (plugin / "processors" / "core.py").write_text(computing)
    result = PluginHost.load(plugin, plugin_id="toy_api").run(frame(3))
    assert result.rows_embedded == 0 and {f.reason for f in result.failures} == {ReasonCode.API_ERROR}
    message = result.failures[0].message
    assert message.startswith("1 API calls failed (first: the API call for item 1 of 3 failed: ConnectionError")
    assert "the step then raised TypeError" in message


GUIDE_LLM_PATTERN = """
from shared.plugins.sdk import LLMError, concurrent_api_calls


class Processor:
    def __init__(self, config):
        self.config = config

    def __call__(self, batch):
        texts = batch["data"].fillna("").tolist()

        async def enrich(text):
            if text.endswith("1"):
                raise LLMError("the LLM provider refused the request with HTTP 400: bad model", "check the model")
            return type("Answer", (), {"data": {"entities": [text]}})()

        results = concurrent_api_calls(items=texts, async_fn=enrich, max_concurrent=10)
        batch["entities"] = [r.data if r else {} for r in results]  # the guide's line
        batch["vec"] = [[1.0, 2.0, 3.0]] * len(batch)
        return batch
"""


def test_a_failed_llm_call_in_concurrent_api_calls_fails_its_row_llm_error(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "return batch")
    (plugin / "processors" / "core.py").write_text(GUIDE_LLM_PATTERN)
    result = PluginHost.load(plugin, plugin_id="toy_llm").run(frame(3))
    assert result.rows_embedded == 2
    (failure,) = result.failures
    assert (failure.document_id, failure.reason) == ("document_id_1", ReasonCode.LLM_ERROR)
    assert "LLMError: the LLM provider refused the request with HTTP 400" in failure.message
    assert failure.hint == "check the model"


def test_a_step_that_computes_with_a_failed_llm_call_fails_the_frame_llm_error(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "return batch")
    computing = GUIDE_LLM_PATTERN.replace(
        'batch["entities"] = [r.data if r else {} for r in results]  # the guide\'s line',
        'batch["entities"] = [len(r.data["entities"]) for r in results]',
    )
    (plugin / "processors" / "core.py").write_text(computing)
    result = PluginHost.load(plugin, plugin_id="toy_llm").run(frame(3))
    assert result.rows_embedded == 0 and {f.reason for f in result.failures} == {ReasonCode.LLM_ERROR}
    assert "the step then raised TypeError" in result.failures[0].message


@pytest.mark.parametrize(
    "body",
    [
        'raise LLMError("the LLM provider failed the request 3 times; last: HTTP 503")',
        'try:\n    raise LLMError("the LLM provider failed the request 3 times; last: HTTP 503")\n'
        "except LLMError as exc:\n    raise ValueError('tagging failed') from exc",
    ],
    ids=["raised", "wrapped"],
)
def test_an_unhandled_llm_error_fails_the_frame_llm_error_with_a_hint(tmp_path: Path, body: str) -> None:
    host = load(tmp_path, "from featurebus.sdk.container import LLMError\n" + body)
    result = host.run(frame(2))
    assert [f.reason for f in result.failures] == [ReasonCode.LLM_ERROR] * 2
    failure = result.failures[0]
    assert "HTTP 503" in failure.message and "processors/core.py" in failure.message
    assert failure.hint and "LLMError" in failure.hint


def test_container_llm_without_a_provider_fails_the_frame_llm_error(tmp_path: Path) -> None:
    pipeline = PIPELINE.replace("config=extractor_request.extractor_config.parameters", 'config={"llm": container.llm}')
    body = 'import asyncio\nasyncio.run(self.config["llm"].generate(instruction="x", text="y"))\nreturn batch'
    result = load(tmp_path, body, pipeline=pipeline).run(frame(1))
    (failure,) = result.failures
    assert failure.reason is ReasonCode.LLM_ERROR and "no LLM provider is configured" in failure.message
    assert "FEATUREBUS_LLM_BASE_URL" in (failure.hint or "")


MISSING_MODEL = (
    'from transformers import AutoModel\nAutoModel.from_pretrained("acme/no-such-model", local_files_only=True)'
)


@pytest.mark.usefixtures("offline_models")
def test_a_model_that_is_not_here_fails_the_frame_model_not_available_naming_it(tmp_path: Path) -> None:
    host = load(tmp_path, MISSING_MODEL + "\nreturn batch")
    result = host.run(frame(2))
    assert [f.reason for f in result.failures] == [ReasonCode.MODEL_NOT_AVAILABLE] * 2
    failure = result.failures[0]
    assert "model 'acme/no-such-model' is not available to this worker" in failure.message
    assert failure.hint and "featurebus models import acme/no-such-model --from" in failure.hint


@pytest.mark.usefixtures("offline_models")
def test_a_model_that_is_not_here_at_load_fails_model_not_available_naming_it(tmp_path: Path) -> None:
    plugin = make_plugin(tmp_path, "return batch")
    core = plugin / "processors" / "core.py"
    core.write_text(
        core.read_text().replace(
            "self.config = config", "self.config = config\n        " + MISSING_MODEL.replace("\n", "\n        ")
        )
    )
    with pytest.raises(PluginError) as info:
        PluginHost.load(plugin, plugin_id="toy_missing_model")
    assert info.value.reason is ReasonCode.MODEL_NOT_AVAILABLE
    assert "model 'acme/no-such-model' is not available to this worker" in info.value.message
