"""Secrets and LLMs in plugins, on the real stack: the scanner reads which secrets a plugin uses,
an org admin grants them to it, its workers get only those, and ``container.llm`` reaches the
operator's OpenAI-compatible provider (a local test server here) through the platform — the
guide's VLM pattern, unchanged. A secret that was not granted fails its rows naming the grant; a
failed LLM call fails its rows ``llm_error``; no secret's value shows in a log, a response or a
row error."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import pytest

from ._client import Api
from ._retrieve import search_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "NAME"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2, "distance_metric": "cosine"}]
"""
# The guide's "Platform LLM Services" and "Managing Secrets" patterns, in one step.
PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from shared.plugins.sdk import concurrent_api_calls

class Tagger:
    def __init__(self, config, **kwargs):
        self._llm = config.get("llm_service")
        self._secrets = config.get("secrets")

    def __call__(self, batch):
        async def tag(text):
            key = await self._secrets.get("SECRET_NAME")
            result = await self._llm.generate(
                instruction="Tag this text",
                text=text,
                schema={"type": "object", "properties": {"tag": {"type": "string"}}},
            )
            return {"tag": result.data["tag"], "key_length": len(key)}

        results = concurrent_api_calls(items=batch["data"].tolist(), async_fn=tag, max_concurrent=10)
        batch["tag"] = [r["tag"] for r in results]
        batch["key_length"] = [r["key_length"] for r in results]
        batch["vec"] = [[1.0, float(len(t))] for t in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    config = {"llm_service": container.llm, "secrets": container.secrets}
    steps = [StepDefinition(service_class=Tagger, config=config)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="NAME", version="1.0.0", steps=steps))}
"""
TEXTS = ["penguins live in antarctica", "sold shares", "penguins sold"]


def plugin_zip(name: str, secret_name: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/manifest.py", MANIFEST.replace("NAME", name))
        zf.writestr(f"{name}/pipeline.py", PIPELINE.replace("SECRET_NAME", secret_name).replace("NAME", name))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def org_secret(api: Api) -> tuple[str, str]:
    name, value = f"TAGGER_KEY_{uuid.uuid4().hex[:6].upper()}", "sk-e2e-" + uuid.uuid4().hex
    api.call("POST", "/v1/organizations/secrets", json={"secret_name": name, "secret_value": value})
    return name, value


def test_a_granted_secret_and_container_llm_run_the_guides_pattern(
    platform: Any, api: Api, llm_server: Any, org_secret: tuple[str, str]
) -> None:
    name, value = org_secret
    llm_server.reset()
    ns = api.namespace(f"access-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "tagger", "1.0.0", plugin_zip("tagger", name))
    assert api.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
    grants = f"/v1/namespaces/{ns}/plugins/{plugin_id}/secrets"
    assert api.call("GET", grants)["declared"] == [name]
    # Only what the plugin declares can be granted, and only what the organization has.
    refused = api.call("PUT", grants, expect=422, json={"secret_names": ["SOMETHING_ELSE"]})
    assert "SOMETHING_ELSE" in json.dumps(refused)
    assert api.call("PUT", grants, json={"secret_names": [name]})["granted"] == [name]
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")

    collection, done, failed = api.run_collection(ns, "tagger", TEXTS)
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), (done, failed)
    batch_calls = llm_server.requests  # (the search below embeds its query through the plugin too)
    results = search_everything(api, ns, collection, "mixpeek://tagger@1.0.0/vec", "penguins")
    payloads = [r.get("payload") or r for r in results]
    assert len(results) == len(TEXTS)
    # The provider's answer, and the secret's length (its value never leaves the worker).
    assert all("key_length" in json.dumps(p) and str(len(value)) in json.dumps(p) for p in payloads), payloads
    assert all('"tag"' in json.dumps(p) for p in payloads), payloads
    # Every row was one call to the provider, made with the operator's key, about the row's text.
    assert len(batch_calls) == len(TEXTS)
    assert {r["headers"].get("authorization") for r in batch_calls} == {f"Bearer {llm_server.api_key}"}
    asked = " ".join(json.dumps(r["json"]["messages"]) for r in batch_calls)
    assert all(text in asked for text in TEXTS)

    logs = {s: platform.log(s) for s in ("registry", "scanner", "dispatcher", "inference", "indexer")}
    shown = json.dumps([done, failed, results, api.call("GET", grants)])
    for hidden in (value, llm_server.api_key):
        assert hidden not in shown
        assert [s for s, text in logs.items() if hidden in text] == [], "a secret reached a log"


def test_a_secret_not_granted_fails_every_row_naming_the_grant(api: Api, org_secret: tuple[str, str]) -> None:
    name, _ = org_secret
    ns = api.namespace(f"ungranted-{uuid.uuid4().hex[:6]}")
    plugin_id = api.deploy_batch_plugin(ns, "tagger_ungranted", "1.0.0", plugin_zip("tagger_ungranted", name))
    _, done, failed = api.run_collection(ns, "tagger_ungranted", TEXTS)
    assert done["rows_written"] == 0 and len(failed) == len(TEXTS), (done, failed)
    assert all(name in f["message"] and f"plugins/{plugin_id}/secrets" in f["message"] for f in failed), failed


def test_a_failed_llm_call_fails_its_rows_llm_error(api: Api, llm_server: Any, org_secret: tuple[str, str]) -> None:
    name, _ = org_secret
    ns = api.namespace(f"llmfail-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "tagger_fail", "1.0.0", plugin_zip("tagger_fail", name))
    assert api.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
    api.call("PUT", f"/v1/namespaces/{ns}/plugins/{plugin_id}/secrets", json={"secret_names": [name]})
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    llm_server.fail_next(400, times=1000)
    try:
        _, done, failed = api.run_collection(ns, "tagger_fail", TEXTS)
    finally:
        llm_server.reset()
    assert done["rows_written"] == 0 and {f["reason"] for f in failed} == {"llm_error"}, (done, failed)
