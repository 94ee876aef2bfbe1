"""The HTTP adapter of the query services, proven congruent with the twin, and its failures.

Each case runs the same calls on the twin (``registry_twins.QueryTwin``) and on
:class:`HttpQueryServices` talking (through httpx's ASGITransport, no socket) to an app that
serves the twin the way inference and the indexer serve theirs: the same answers, the same
refusals. Then what only HTTP has: the token, a service that is not listening (waited for until
the deadline), one that is too slow, one that drops a kept-alive connection, one that answers junk.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from registry_twins import QueryTwin

from featurebus.common.events import PluginRef
from featurebus.common.internal_api import ServiceTokenGuard
from featurebus.common.queries import (
    EMBED_PATH,
    RERANK_PATH,
    SEARCH_PATH,
    EmbedRequest,
    QueryText,
    RerankRequest,
    SearchHit,
    SearchRequest,
    VectorSearch,
)
from featurebus.registry.query_services import HttpQueryServices, QueryServices, Refused, Unreachable

TOKEN = SecretStr("s3cret-token")
PLUGIN = PluginRef(plugin_id="p_1_0_0", name="p", version="1.0.0", archive_uri="s3://b/p.zip", archive_sha256="0" * 64)
EMBED = EmbedRequest(
    request_id="r1", namespace_id="ns_1", queries=[QueryText(plugin=PLUGIN, feature_name="v", text=t) for t in "ab"]
)
RERANK = RerankRequest(request_id="r1", namespace_id="ns_1", model="m", query="q", documents=["a", "bb"])
SEARCH = SearchRequest(
    request_id="r1", namespace_id="ns_1", searches=[VectorSearch(feature_name="v", collection_ids=["c"], vector=[1.0])]
)


def served(twin: QueryTwin, token: SecretStr | None = TOKEN) -> FastAPI:
    """The twin behind both internal paths, with their token check and their 422 refusals."""
    app = FastAPI()
    app.add_middleware(ServiceTokenGuard, token=token, service="test")

    async def answer(call: Any) -> Any:
        try:
            return (await call).model_dump()
        except Refused as exc:
            return JSONResponse({"detail": exc.detail, "hint": exc.hint}, status_code=exc.status)

    @app.post(EMBED_PATH)
    async def embed(request: EmbedRequest) -> Any:
        return await answer(twin.embed(request))

    @app.post(SEARCH_PATH)
    async def search(request: SearchRequest) -> Any:
        return await answer(twin.search(request))

    @app.post(RERANK_PATH)
    async def rerank(request: RerankRequest) -> Any:
        return await answer(twin.rerank(request))

    return app


def over_http(app: FastAPI, token: SecretStr | None = TOKEN, timeout_s: float = 5.0) -> HttpQueryServices:
    transport = httpx.ASGITransport(app=app)
    return HttpQueryServices("http://inference", "http://indexer", token, timeout_s, transport=transport)


async def outcome(services: QueryServices, call: str) -> Any:
    try:
        calls = {
            "embed": lambda: services.embed(EMBED),
            "search": lambda: services.search(SEARCH),
            "rerank": lambda: services.rerank(RERANK),
        }
        answer = await calls[call]()
        return answer.model_dump()
    except Refused as exc:
        return ("refused", exc.status, exc.detail, exc.hint)


def hits() -> list[list[SearchHit]]:
    return [[SearchHit(document_id="d1", collection_id="c", score=0.5, payload={"text": "t"})]]


@pytest.mark.parametrize(
    "setup",
    [
        {},
        {"vector": [0.1, 0.2], "hits": hits()},
        {"embed_failure": Refused("inference", 422, "p_1_0_0 could not embed the query: boom", "fix it")},
        {"search_failure": Refused("indexer", 422, "search 0 ('v'): collection c does not exist in the index")},
        {"rerank_failure": Refused("inference", 422, "reranker 'acme/x' is neither a builtin nor ...", "import it")},
    ],
)
@pytest.mark.parametrize("call", ["embed", "search", "rerank"])
async def test_the_http_adapter_answers_and_refuses_as_the_twin_does(setup: dict[str, Any], call: str) -> None:
    twin, remote = QueryTwin(**setup), QueryTwin(**setup)
    http = over_http(served(remote))
    try:
        assert await outcome(http, call) == await outcome(twin, call)
    finally:
        await http.aclose()
    assert (remote.embedded, remote.searched, remote.reranked) == (twin.embedded, twin.searched, twin.reranked)


@pytest.mark.parametrize(
    ("server_token", "client_token", "needle"),
    [
        (TOKEN, None, "needs Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>"),
        (TOKEN, SecretStr("wrong"), "needs Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>"),
        (None, TOKEN, "has no FEATUREBUS_INTERNAL_TOKEN and refuses every request"),
    ],
)
async def test_a_call_without_the_right_token_is_refused_401_with_the_fix(
    server_token: SecretStr | None, client_token: SecretStr | None, needle: str
) -> None:
    remote = QueryTwin()
    http = over_http(served(remote, server_token), client_token)
    try:
        with pytest.raises(Refused) as refused:
            await http.embed(EMBED)
    finally:
        await http.aclose()
    assert refused.value.status == 401 and needle in refused.value.detail
    assert refused.value.hint == "give every service the same FEATUREBUS_INTERNAL_TOKEN"
    assert remote.embedded == []  # never reached the service


def failing_transport(
    *failures: Exception, then: httpx.Response | None = None
) -> tuple[httpx.MockTransport, list[int]]:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) <= len(failures):
            raise failures[len(calls) - 1]
        assert then is not None
        return then

    return httpx.MockTransport(handle), calls


async def test_a_service_not_listening_is_waited_for_until_the_deadline_then_unreachable() -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    transport, calls = failing_transport(*[refused] * 100)
    http = HttpQueryServices("http://127.0.0.1:1", "http://127.0.0.1:2", TOKEN, 0.6, transport=transport)
    with pytest.raises(Unreachable) as gone:
        await http.search(SEARCH)
    assert (gone.value.service, gone.value.url) == ("indexer", "http://127.0.0.1:2/internal/v1/search")
    assert "not listening" in gone.value.why and "Connection refused" in gone.value.why
    assert 2 <= len(calls) <= 4  # retried every 0.25 s within the 0.6 s


async def test_a_service_that_starts_listening_in_time_answers() -> None:
    ok = httpx.Response(200, json={"vectors": [[1.0], [2.0]]})
    transport, calls = failing_transport(httpx.ConnectError("refused"), httpx.ConnectError("refused"), then=ok)
    http = HttpQueryServices("http://inference", "http://indexer", TOKEN, 5.0, transport=transport)
    assert (await http.embed(EMBED)).vectors == [[1.0], [2.0]] and len(calls) == 3


async def test_a_dropped_connection_is_tried_once_more_then_unreachable() -> None:
    ok = httpx.Response(200, json={"hits": [[]]})
    transport, calls = failing_transport(httpx.RemoteProtocolError("Server disconnected"), then=ok)
    http = HttpQueryServices("http://inference", "http://indexer", TOKEN, 5.0, transport=transport)
    assert (await http.search(SEARCH)).hits == [[]] and len(calls) == 2
    dropped = [httpx.ReadError("reset")] * 2
    transport, calls = failing_transport(*dropped)
    http = HttpQueryServices("http://inference", "http://indexer", TOKEN, 5.0, transport=transport)
    with pytest.raises(Unreachable, match=r"the connection failed \(ReadError: reset\)"):
        await http.search(SEARCH)
    assert len(calls) == 2


async def test_a_slow_service_is_unreachable_after_the_timeout() -> None:
    transport, _ = failing_transport(httpx.ReadTimeout("timed out"))  # as httpx raises it for a slow socket
    http = HttpQueryServices("http://inference", "http://indexer", TOKEN, 0.2, transport=transport)
    with pytest.raises(Unreachable, match="no answer within 0s"):
        await http.embed(EMBED)


@pytest.mark.parametrize(
    ("response", "status", "detail"),
    [
        (httpx.Response(500, text="Internal Server Error"), 500, "Internal Server Error"),
        (httpx.Response(503, json={"detail": "Qdrant unreachable: boom"}), 503, "Qdrant unreachable: boom"),
        (httpx.Response(502, text=""), 502, "(an empty body)"),
        (httpx.Response(200, json={"vectors": "nope"}), 200, "an answer that is not a EmbedResponse"),
    ],
)
async def test_an_error_or_junk_answer_is_refused_with_what_the_service_said(
    response: httpx.Response, status: int, detail: str
) -> None:
    transport, _ = failing_transport(then=response)
    http = HttpQueryServices("http://inference", "http://indexer", TOKEN, 5.0, transport=transport)
    with pytest.raises(Refused) as refused:
        await http.embed(EMBED)
    assert refused.value.status == status and refused.value.detail.startswith(detail)


async def test_every_call_carries_the_token_and_json() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"hits": []})

    http = HttpQueryServices("http://i/", "http://x/", TOKEN, 5.0, transport=httpx.MockTransport(handle))
    await http.search(SEARCH)
    [request] = seen
    assert str(request.url) == "http://x/internal/v1/search"
    assert request.headers["authorization"] == "Bearer s3cret-token"
    assert request.headers["content-type"] == "application/json"
    assert SearchRequest.model_validate_json(request.content) == SEARCH
