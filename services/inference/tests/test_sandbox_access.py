"""Inside the sandbox a plugin gets the secrets granted to it and ``container.llm`` through the
supervisor: the provider's key never enters the sandbox, a failed call fails its row ``llm_error``,
and no secret's value comes out in a row error, a payload or the log."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from inference_twins import TOY_MANIFEST, frame, toy_archive
from pydantic import SecretStr

from featurebus.common.events import ReasonCode
from featurebus.common.frames import from_parquet
from featurebus.inference.access_supply import PluginAccess
from featurebus.inference.plugin_access import LLMSettings
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "sk-live-granted-4f9a7c31"
LLM_KEY = "operator-llm-key-9e2b6d"

# The guide's VLM pattern: container.llm and a secret handed to the step, calls made concurrently.
GUIDE_PIPELINE = """
import os
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from shared.plugins.sdk import concurrent_api_calls

class Analyze:
    def __init__(self, config, **kwargs):
        self._llm = config.get("llm_service")
        self._secrets = config.get("secrets")

    def __call__(self, batch):
        async def ask(text):
            key = await self._secrets.get("EXTERNAL_API_KEY")
            return await self._llm.generate(
                instruction="Tag this text",
                text=text,
                model="test-model",
                schema={"type": "object", "properties": {"tag": {"type": "string"}}},
            ), len(key)

        results = concurrent_api_calls(items=batch["data"].tolist(), async_fn=ask, max_concurrent=10)
        batch["tag"] = [r[0].data["tag"] for r in results]
        batch["key_length"] = [r[1] for r in results]
        batch["key_seen"] = [LLM_KEY in repr(vars(self._llm)) or LLM_KEY in str(dict(os.environ))] * len(batch)
        batch["vec"] = [[1.0, float(len(t))] for t in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    config = {"llm_service": container.llm, "secrets": container.secrets}
    steps = [StepDefinition(service_class=Analyze, config=config)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
""".replace("LLM_KEY", repr(LLM_KEY))

# A plugin that tries every way out for its secret: a print, an exception, a payload field.
LEAK_PIPELINE = """
import asyncio
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Leak:
    def __init__(self, config, **kwargs):
        self.key = asyncio.run(config["secrets"].get("EXTERNAL_API_KEY"))

    def __call__(self, batch):
        print("the key is", self.key)
        if (batch["data"] == "raise").any():
            raise RuntimeError(f"upstream refused key {self.key}")
        batch["leak"] = [self.key if t == "leak" else "clean" for t in batch["data"]]
        batch["vec"] = [[1.0, 2.0] for _ in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Leak, config={"secrets": container.secrets})]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""

UNGRANTED_PIPELINE = """
import asyncio
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Reads:
    def __init__(self, config, **kwargs):
        self.secrets = config["secrets"]

    def __call__(self, batch):
        asyncio.run(self.secrets.get("NOT_GRANTED"))
        batch["vec"] = [[1.0, 2.0] for _ in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Reads, config={"secrets": container.secrets})]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="toy", version="1.0.0", steps=steps))}
"""


def worker(tmp_path: Any, pipeline: str, llm: LLMSettings | None) -> SandboxedWorker:
    access = PluginAccess("ns_a", "toy_1_0_0", {"EXTERNAL_API_KEY": SECRET}, llm)
    config = SandboxConfig(memory_bytes=3 * 1024**3, frame_cpu_seconds=60)
    w = SandboxedWorker(
        "toy_1_0_0", toy_archive(pipeline, TOY_MANIFEST), None, str(tmp_path), None, config, access=access
    )
    assert w.load_error is None, w.load_error
    return w


def settings(server: Any) -> LLMSettings:
    return LLMSettings(base_url=server.base_url, api_key=SecretStr(LLM_KEY), model="default-model", retries=0)


def test_the_guides_llm_pattern_runs_with_a_granted_secret_and_the_key_stays_outside(
    tmp_path: Any, llm_server: Any
) -> None:
    w = worker(tmp_path, GUIDE_PIPELINE, settings(llm_server))
    try:
        output = w.process(frame(["alpha", "beta", "gamma"]))
    finally:
        w.close()
    assert output.failures == [] and output.rows_embedded == 3
    rows = from_parquet(output.vectors_parquet or b"")
    payloads = [p if isinstance(p, dict) else json.loads(p) for p in rows["payload"]]
    assert [p["key_length"] for p in payloads] == [len(SECRET)] * 3  # the granted secret, read in the sandbox
    assert [p["tag"] for p in payloads] == ["ok"] * 3  # the provider's structured answer, as result.data
    assert not any(p["key_seen"] for p in payloads)  # the provider's key is nowhere in the sandbox
    # Three calls reached the provider, each with the operator's key, each with the row's text.
    assert len(llm_server.requests) == 3
    assert {r["headers"].get("authorization") for r in llm_server.requests} == {f"Bearer {LLM_KEY}"}
    assert sorted(str(r["json"]["messages"]) for r in llm_server.requests)[0].count("alpha") == 1


def test_a_failed_llm_call_fails_its_rows_llm_error(tmp_path: Any, llm_server: Any) -> None:
    llm_server.fail_next(400, times=100)
    w = worker(tmp_path, GUIDE_PIPELINE, settings(llm_server))
    try:
        output = w.process(frame(["alpha", "beta"]))
    finally:
        w.close()
    assert output.rows_embedded == 0
    assert {f.reason for f in output.failures} == {ReasonCode.LLM_ERROR}
    assert all(LLM_KEY not in f.message for f in output.failures)


def test_a_secret_leaves_the_sandbox_in_no_log_row_error_or_payload(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="featurebus.inference.sandbox")
    w = worker(tmp_path, LEAK_PIPELINE, None)
    try:
        raised = w.process(frame(["raise", "fine"]))
        leaked = w.process(frame(["leak", "fine"]))
    finally:
        w.close()
    assert {f.reason for f in raised.failures} == {ReasonCode.PLUGIN_EXCEPTION}
    assert all(SECRET not in f.message and "[REDACTED]" in f.message for f in raised.failures)
    # The row that put the secret into its payload fails; the clean one is indexed.
    assert [(f.document_id, f.reason) for f in leaked.failures] == [("document_id_0", ReasonCode.SANDBOX_VIOLATION)]
    assert leaked.rows_embedded == 1 and SECRET not in str(from_parquet(leaked.vectors_parquet or b"").to_dict())
    assert "the key is [REDACTED]" in caplog.text and SECRET not in caplog.text


def test_a_secret_not_granted_fails_the_row_naming_the_grant(tmp_path: Any) -> None:
    w = worker(tmp_path, UNGRANTED_PIPELINE, None)
    try:
        output = w.process(frame(["x"]))
    finally:
        w.close()
    (failure,) = output.failures
    assert "NOT_GRANTED" in failure.message and "/secrets" in failure.message
