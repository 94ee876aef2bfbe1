"""``container.llm`` over the platform's call, and ``container.secrets``, as the guide uses them."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

import featurebus.sdk as sdk
from featurebus.common.events import ReasonCode
from featurebus.sdk.container import (
    LLMError,
    LLMNotConfigured,
    LLMRequest,
    LLMResult,
    PlatformLLM,
    PluginContainer,
    SecretNotGranted,
    Secrets,
    redact,
)
from featurebus.sdk.rows import FailedCall

SCHEMA = {"type": "object", "properties": {"tag": {"type": "string"}}}


class FakeGateway:
    """The platform's synchronous call, in memory: records requests, sleeps, counts overlap."""

    def __init__(self, sleep_s: float = 0.0, fail_on: str | None = None) -> None:
        self.sleep_s, self.fail_on = sleep_s, fail_on
        self.requests: list[dict[str, Any]] = []
        self.running = self.peak = 0
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.requests.append(request)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            time.sleep(self.sleep_s)
            if self.fail_on is not None and request.get("text") == self.fail_on:
                raise LLMError("the LLM provider refused the request with HTTP 400", "check the model")
            data = {"tag": request["text"]} if "schema" in request else None
            return {"text": str(request.get("text")), "data": data, "model": "m", "provider": "p", "usage": {"n": 1}}
        finally:
            with self._lock:
                self.running -= 1


def test_generate_sends_the_guides_fields_and_returns_a_result() -> None:
    gateway = FakeGateway()
    llm = PlatformLLM(gateway)
    result = asyncio.run(
        llm.generate(
            instruction="Tag", text="penguins", images="s3://b/x.png", provider="google", model="g", schema=SCHEMA
        )
    )
    assert isinstance(result, LLMResult) and result
    assert (result.data, result.text, result.model, result.provider, result.usage) == (
        {"tag": "penguins"},
        "penguins",
        "m",
        "p",
        {"n": 1},
    )
    assert gateway.requests == [
        {
            "instruction": "Tag",
            "text": "penguins",
            "images": ["s3://b/x.png"],
            "provider": "google",
            "model": "g",
            "schema": SCHEMA,
        }
    ]
    assert llm.service is llm and "call" not in repr(llm)


def test_process_takes_an_llm_request_and_ignores_unknown_fields() -> None:
    class Tag(BaseModel):
        tag: str

    gateway = FakeGateway()
    request = LLMRequest(text="x", schema=Tag, temperature=0.1, top_k=3)  # type: ignore[call-arg]
    assert request.output_schema is not None and request.output_schema["properties"]["tag"]["type"] == "string"
    result = asyncio.run(PlatformLLM(gateway).process(request))
    assert result.data == {"tag": "x"}
    assert set(gateway.requests[0]) == {"text", "images", "schema", "temperature"}
    assert asyncio.run(PlatformLLM(gateway).process({"text": "y"})).data is None


def test_the_guides_import_path_names_llm_request() -> None:
    sdk.install_aliases()
    from shared.plugins.sdk import LLMRequest as GuideRequest  # type: ignore[import-not-found]

    assert GuideRequest is LLMRequest


def test_concurrent_api_calls_overlaps_llm_calls() -> None:
    gateway = FakeGateway(sleep_s=0.2)
    llm = PlatformLLM(gateway)

    async def enrich(text: str) -> Any:
        return await llm.generate(instruction="Extract", text=text)

    results = sdk.concurrent_api_calls([f"t{i}" for i in range(10)], enrich, max_concurrent=10)
    assert [r.text for r in results] == [f"t{i}" for i in range(10)]
    assert gateway.peak > 1  # the synchronous calls ran in threads, together


def test_a_failed_llm_call_fails_its_row_llm_error_with_the_gateways_hint() -> None:
    llm = PlatformLLM(FakeGateway(fail_on="bad"))

    async def enrich(text: str) -> Any:
        return await llm.generate(text=text)

    ok, failed = sdk.concurrent_api_calls(["fine", "bad"], enrich)
    assert isinstance(ok, LLMResult)
    assert isinstance(failed, FailedCall) and failed.reason is ReasonCode.LLM_ERROR
    assert "LLMError: the LLM provider refused the request with HTTP 400" in failed.message
    assert failed.hint == "check the model"


@pytest.mark.parametrize(
    "answer", [None, [1, 2], {"text": 3, "data": "not an object"}], ids=["none", "list", "wrong-fields"]
)
def test_a_result_of_the_wrong_shape_is_an_llm_error(answer: Any) -> None:
    llm = PlatformLLM(lambda request: answer)
    with pytest.raises(LLMError, match="gateway answered"):
        asyncio.run(llm.generate(text="x"))


def test_an_invalid_request_is_an_llm_error() -> None:
    with pytest.raises(LLMError, match=r"invalid container\.llm request"):
        asyncio.run(PlatformLLM(FakeGateway()).generate(text="x", temperature="hot"))


def test_llm_errors_keep_message_and_hint_across_processes() -> None:
    err = pickle.loads(pickle.dumps(LLMNotConfigured("not configured", "set it up")))
    assert isinstance(err, LLMNotConfigured) and isinstance(err, LLMError)
    assert (err.message, err.hint) == ("not configured", "set it up")


def test_the_default_container_has_no_llm_and_no_secrets() -> None:
    container = PluginContainer()
    with pytest.raises(LLMNotConfigured, match="no LLM provider"):
        asyncio.run(container.llm.process(LLMRequest(text="x")))
    assert asyncio.run(container.secrets.list()) == []


def test_secrets_get_list_and_name_the_grant_of_a_missing_one() -> None:
    secrets = Secrets({"B_KEY": "value-b-123", "A_KEY": "value-a-456"}, "ns_1", "tagger_1_0_0")
    assert asyncio.run(secrets.get("A_KEY")) == "value-a-456"
    assert asyncio.run(secrets.list()) == ["A_KEY", "B_KEY"]
    with pytest.raises(SecretNotGranted) as info:
        asyncio.run(secrets.get("OTHER"))
    message = str(info.value)
    assert isinstance(info.value, LookupError) and info.value.name == "OTHER"
    assert "'OTHER'" in message and "PUT /v1/namespaces/ns_1/plugins/tagger_1_0_0/secrets" in message
    assert "POST /v1/organizations/secrets" in message and "value-" not in message
    for shown in (repr(secrets), str(secrets), repr(PluginContainer(secrets=secrets))):
        assert "value-" not in shown and "A_KEY" in shown


def test_secrets_without_ids_still_name_the_endpoints() -> None:
    with pytest.raises(SecretNotGranted, match=r"PUT /v1/namespaces/\{namespace_id\}/plugins/\{plugin_id\}/secrets"):
        asyncio.run(Secrets().get("X"))


def test_redact_hides_every_value_longest_first_and_ignores_short_ones() -> None:
    text = "key sk-abc-LONGER and sk-abc twice sk-abc, pin 123"
    assert redact(text, ["sk-abc", "sk-abc-LONGER", "123", ""]) == (
        "key [REDACTED] and [REDACTED] twice [REDACTED], pin 123"
    )
    assert redact("nothing here", []) == "nothing here"
