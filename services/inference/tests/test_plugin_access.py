"""The LLM gateway against a local OpenAI-compatible server: the operator's key goes to the provider
as a bearer token and nowhere else, schemas come back parsed, transient failures are retried and
others fail at once, concurrency stays bounded, and a frame's s3 images are inlined."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from pydantic import SecretStr

from featurebus.inference.config import InferenceSettings
from featurebus.inference.plugin_access import LLMGateway, LLMSettings
from featurebus.sdk.container import LLMError, LLMNotConfigured

pytestmark = pytest.mark.integration  # a real local HTTP server (the llm_server fixture)

KEY = "sk-operator-7d1f0b9e42"
SCHEMA = {
    "type": "object",
    "properties": {
        "compliant": {"type": "boolean"},
        "violations": {"type": "array", "items": {"type": "string"}},
        "score": {"type": "number"},
    },
}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def gateway(server: Any, fetch: Any = None, **overrides: Any) -> LLMGateway:
    defaults: dict[str, Any] = {"base_url": server.base_url, "api_key": SecretStr(KEY), "model": "default-model"}
    return LLMGateway(LLMSettings(**{**defaults, "backoff_s": 0.01, **overrides}), fetch=fetch)


def test_a_call_sends_the_key_as_bearer_and_the_guides_request_as_chat_messages(llm_server: Any) -> None:
    gw = gateway(llm_server)
    try:
        result = gw.call({"instruction": "Tag this text", "text": "penguins", "provider": "google"})
    finally:
        gw.close()
    assert result["text"] == "penguins" and result["data"] is None
    assert result["model"] == "default-model" and result["usage"]["total_tokens"] == 10
    (request,) = llm_server.requests
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["json"]["model"] == "default-model"
    assert request["json"]["messages"] == [
        {"role": "system", "content": "Tag this text"},
        {"role": "user", "content": "penguins"},
    ]


def test_a_schema_asks_for_json_and_the_answer_is_parsed_into_data(llm_server: Any) -> None:
    gw = gateway(llm_server)
    result = gw.call({"instruction": "Evaluate", "text": "x", "model": "test-model", "schema": SCHEMA})
    gw.close()
    assert result["data"] == {"compliant": True, "violations": ["ok"], "score": 0.5}
    sent = llm_server.requests[0]["json"]
    assert sent["model"] == "test-model"
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "result", "schema": SCHEMA}}


def test_an_answer_that_is_not_a_json_object_fails_saying_so(llm_server: Any) -> None:
    llm_server.answer_next("certainly! here you go", times=1)
    llm_server.answer_next("[1, 2]", times=1)
    gw = gateway(llm_server)
    with pytest.raises(LLMError, match="not JSON"):
        gw.call({"text": "x", "schema": SCHEMA})
    with pytest.raises(LLMError, match=r"JSON object .* answered a list"):
        gw.call({"text": "x", "schema": SCHEMA})
    gw.close()


def test_500_and_429_are_retried_then_the_call_succeeds(llm_server: Any) -> None:
    llm_server.fail_next(500, times=1)
    llm_server.fail_next(429, times=1, retry_after=0)
    gw = gateway(llm_server, retries=2)
    assert gw.call({"text": "again"})["text"] == "again"
    gw.close()
    assert len(llm_server.requests) == 3


def test_retries_exhausted_fail_naming_the_status_and_body(llm_server: Any) -> None:
    llm_server.fail_next(503, times=5)
    gw = gateway(llm_server, retries=1)
    with pytest.raises(LLMError, match="failed the request 2 times; last: HTTP 503") as info:
        gw.call({"text": "x"})
    gw.close()
    assert "injected failure 503" in info.value.message and len(llm_server.requests) == 2


def test_a_400_fails_at_once_with_the_providers_answer(llm_server: Any) -> None:
    llm_server.fail_next(400, times=5)
    gw = gateway(llm_server, retries=3)
    with pytest.raises(LLMError, match="refused the request with HTTP 400") as info:
        gw.call({"text": "x"})
    gw.close()
    assert len(llm_server.requests) == 1 and "injected failure 400" in info.value.message
    assert info.value.hint


def test_no_error_contains_the_key(llm_server: Any) -> None:
    # The provider echoes the key in its error body, as some proxies do; a step names it in an image.
    llm_server.fail_next(401, times=1, message=f"invalid api key {KEY}")
    gw = gateway(llm_server)
    errors: list[LLMError] = []
    for request in ({"text": "x"}, {"images": ["file:///etc/" + KEY]}, {"images": [f"s3://b/{KEY}.png"]}):
        try:
            gw.call(request)
        except LLMError as err:
            errors.append(err)
    gw.close()
    unreachable = LLMGateway(LLMSettings(base_url="http://127.0.0.1:9/v1", api_key=SecretStr(KEY), retries=0))
    with pytest.raises(LLMError) as info:
        unreachable.call({"text": "x"})
    errors.append(info.value)
    assert len(errors) == 4
    for err in errors:
        assert KEY not in f"{err} {err.message} {err.hint} {err!r}"
    assert "[REDACTED]" in errors[0].message and "401" in errors[0].message
    assert "FEATUREBUS_LLM_API_KEY" in (errors[0].hint or "")


def test_concurrency_is_bounded_by_max_concurrency(llm_server: Any) -> None:
    llm_server.set_delay(0.2)
    gw = gateway(llm_server, max_concurrency=3)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(gw.call({"text": f"t{i}"})["text"])) for i in range(9)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gw.close()
    assert sorted(results) == sorted(f"t{i}" for i in range(9))
    assert llm_server.max_in_flight == 3


def test_an_s3_image_is_read_through_fetch_and_inlined(llm_server: Any) -> None:
    asked: list[str] = []

    def fetch(uri: str) -> bytes:
        asked.append(uri)
        return PNG

    gw = gateway(llm_server, fetch=fetch)
    gw.call({"text": "describe", "images": ["s3://bucket/row.png", "https://example.com/a.jpg"]})
    gw.close()
    assert asked == ["s3://bucket/row.png"]
    (user,) = [m for m in llm_server.requests[0]["json"]["messages"] if m["role"] == "user"]
    assert user["content"] == [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
    ]


def test_a_refused_or_unreadable_image_fails_the_call_naming_it(llm_server: Any) -> None:
    def refuse(uri: str) -> bytes:
        raise PermissionError(f"reading the blob {uri!r} was refused")

    for fetch in (refuse, None):
        gw = gateway(llm_server, fetch=fetch)
        with pytest.raises(LLMError, match=r"s3://other/secret\.png"):
            gw.call({"text": "x", "images": ["s3://other/secret.png"]})
        gw.close()
    assert llm_server.requests == []


def test_not_configured_names_the_operator_settings() -> None:
    with pytest.raises(LLMNotConfigured) as info:
        LLMGateway(LLMSettings()).call({"text": "x"})
    assert "FEATUREBUS_LLM_BASE_URL" in (info.value.hint or "")
    assert "FEATUREBUS_LLM_API_KEY" in (info.value.hint or "")


def test_the_service_settings_build_the_gateways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEATUREBUS_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("FEATUREBUS_LLM_API_KEY", KEY)
    monkeypatch.setenv("FEATUREBUS_LLM_MODEL", "m")
    monkeypatch.setenv("FEATUREBUS_LLM_RETRIES", "0")
    llm = InferenceSettings().llm()
    assert llm.configured and llm.model == "m" and llm.retries == 0 and llm.max_concurrency == 8
    assert llm.api_key is not None and llm.api_key.get_secret_value() == KEY and KEY not in repr(llm)
    assert not InferenceSettings(llm_base_url=None).llm().configured
