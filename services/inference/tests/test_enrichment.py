"""LLM stages' calls against a local OpenAI-compatible server: one call per item, at once up to the
bound, a failed call that item's error only, images of the namespace inlined and anyone else's
refused, and a request without a provider refused whole, naming the settings."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from pydantic import SecretStr

from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import EnrichItem, EnrichRequest
from featurebus.inference.enrichment import MAX_ITEMS, Enricher, EnrichFailed
from featurebus.inference.plugin_access import LLMSettings

pytestmark = pytest.mark.integration  # a real local HTTP server (the llm_server fixture)

KEY = "sk-operator-51c0e2d7aa"
SCHEMA = {"type": "object", "properties": {"relevant": {"type": "boolean"}}}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def enricher(server: Any, store: MemoryObjectStore | None = None, **overrides: Any) -> Enricher:
    settings: dict[str, Any] = {"base_url": server.base_url, "api_key": SecretStr(KEY), "backoff_s": 0.01}
    return Enricher(LLMSettings(**{**settings, **overrides}), store or MemoryObjectStore())


def request(*items: EnrichItem, **more: Any) -> EnrichRequest:
    return EnrichRequest(request_id="r1", namespace_id="ns_a", items=list(items), **more)


async def test_each_item_is_one_call_with_the_stages_instruction_model_and_schema(llm_server: Any) -> None:
    answer = await enricher(llm_server).enrich(
        request(
            EnrichItem(text="is a cat relevant?"),
            EnrichItem(text="is a dog relevant?"),
            instruction="judge relevance",
            model="judge-1",
            output_schema=SCHEMA,
            temperature=0.0,
        )
    )
    assert [(r.data, r.error) for r in answer.results] == [({"relevant": True}, None)] * 2
    sent = sorted((r["json"] for r in llm_server.requests), key=lambda body: str(body["messages"]))
    assert [body["messages"][1]["content"] for body in sent] == ["is a cat relevant?", "is a dog relevant?"]
    assert all(body["messages"][0] == {"role": "system", "content": "judge relevance"} for body in sent)
    assert all(body["model"] == "judge-1" and body["temperature"] == 0.0 for body in sent)
    assert all(body["response_format"]["json_schema"]["schema"] == SCHEMA for body in sent)
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in llm_server.requests)


async def test_a_failed_call_is_its_items_error_and_the_others_are_answered(llm_server: Any) -> None:
    llm_server.fail_next(400, message="content policy")
    answer = await enricher(llm_server, retries=0).enrich(request(EnrichItem(text="one")))
    [failed] = answer.results
    assert failed.text is None and "400" in (failed.error or "") and "content policy" in (failed.error or "")
    assert KEY not in (failed.error or "")
    answer = await enricher(llm_server).enrich(request(EnrichItem(text="two"), EnrichItem(text="three")))
    assert [r.text for r in answer.results] == ["two", "three"]  # the test server echoes free text


async def test_calls_overlap_up_to_the_bound(llm_server: Any) -> None:
    llm_server.set_delay(0.3)
    began = time.perf_counter()
    answer = await enricher(llm_server, max_concurrency=4).enrich(
        request(*(EnrichItem(text=f"t{i}") for i in range(8)))
    )
    took = time.perf_counter() - began
    assert [r.text for r in answer.results] == [f"t{i}" for i in range(8)]  # in order
    assert 0.55 < took < 2.0, took  # two rounds of four, not eight calls one after another


async def test_images_of_the_namespace_are_inlined_and_anyone_elses_are_refused(llm_server: Any) -> None:
    store = MemoryObjectStore()
    own = await store.put_bytes("blobs/org_1/ns_a/bkt_1/upl_1/cat.png", PNG)
    foreign = await store.put_bytes("blobs/org_1/ns_b/bkt_9/upl_9/secret.png", PNG)
    staging = await store.put_bytes("uploads/blobs/upl_1", PNG)
    answer = await enricher(llm_server, store).enrich(
        request(
            EnrichItem(text="own", images=[own]),
            EnrichItem(text="foreign", images=[foreign]),
            EnrichItem(text="staging", images=[staging]),
            EnrichItem(text="sneaky", images=[own.replace("ns_a/", "ns_a/../../ns_b/")]),
        )
    )
    own_answer, *refused = answer.results
    assert own_answer.error is None
    assert all("is not a blob of this namespace" in (r.error or "") for r in refused)
    [sent] = [r["json"] for r in llm_server.requests]
    image = sent["messages"][0]["content"][1]["image_url"]["url"]
    assert image == "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_without_a_provider_or_with_too_many_items_the_request_is_refused(llm_server: Any) -> None:
    with pytest.raises(EnrichFailed, match="no LLM provider is configured") as caught:
        await enricher(llm_server, base_url=None).enrich(request(EnrichItem(text="x")))
    assert "FEATUREBUS_LLM_BASE_URL" in (caught.value.hint or "")
    with pytest.raises(EnrichFailed, match=f"at most {MAX_ITEMS}"):
        await enricher(llm_server).enrich(request(*[EnrichItem(text="x")] * (MAX_ITEMS + 1)))
    assert llm_server.requests == []
