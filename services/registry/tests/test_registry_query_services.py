"""The HTTP adapter of the query services, proven congruent with the twin, and its failures.

Each case runs the same calls on the twin (``registry_twins.QueryTwin``) and on
:class:`HttpQueryServices` talking (over loopback sockets: the adapter is aiohttp's) to an app that
serves the twin the way inference and the indexer serve theirs: the same answers, the same
refusals. Then what only HTTP has: the token, a service that is not listening (waited for until
the deadline), one that is too slow, one that drops a kept-alive connection, one that answers junk
(a canned server: :class:`Canned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from registry_twins import QueryTwin

from featurebus.common.events import PluginRef
from featurebus.common.internal_api import InternalServer, ServiceTokenGuard
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

# Every case talks HTTP to a server it starts on a loopback port.
pytestmark = pytest.mark.integration

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


@contextlib.asynccontextmanager
async def over_http(
    app: FastAPI, token: SecretStr | None = TOKEN, timeout_s: float = 5.0
) -> AsyncIterator[HttpQueryServices]:
    """The adapter, both of its services being ``app`` served on a loopback port."""
    server = InternalServer(app, "127.0.0.1", 0, "test")
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    http = HttpQueryServices(url, url, token, timeout_s)
    try:
        yield http
    finally:
        await http.aclose()
        await server.stop()


class Canned:
    """A loopback HTTP/1.1 server answering each request with the next of ``answers`` (the last
    one again once they run out): ``(status, body)``, ``"drop"`` (close the connection without an
    answer) or ``"hang"`` (never answer). ``requests``: each request's head and body."""

    def __init__(self, *answers: tuple[int, bytes] | str) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.url = ""
        self._done = asyncio.Event()

    async def __aenter__(self) -> Canned:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._done.set()
        self._server.close()
        await self._server.wait_closed()

    def header(self, number: int, name: str) -> str:
        for line in self.requests[number][0].decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        raise KeyError(name)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(v)
                        for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                        if k.lower() == b"content-length"
                    ),
                    0,
                )
                self.requests.append((head, await reader.readexactly(length)))
                answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                if answer == "drop":
                    return
                if answer == "hang":
                    await self._done.wait()
                    return
                status, body = answer
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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
    async with over_http(served(remote)) as http:
        assert await outcome(http, call) == await outcome(twin, call)
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
    async with over_http(served(remote, server_token), client_token) as http:
        with pytest.raises(Refused) as refused:
            await http.embed(EMBED)
    assert refused.value.status == 401 and needle in refused.value.detail
    assert refused.value.hint == "give every service the same FEATUREBUS_INTERNAL_TOKEN"
    assert remote.embedded == []  # never reached the service


async def test_a_service_not_listening_is_waited_for_until_the_deadline_then_unreachable() -> None:
    port = free_port()
    http = HttpQueryServices("http://127.0.0.1:1", f"http://127.0.0.1:{port}", TOKEN, 0.6)
    began = time.monotonic()
    with pytest.raises(Unreachable) as gone:
        await http.search(SEARCH)
    await http.aclose()
    assert (gone.value.service, gone.value.url) == ("indexer", f"http://127.0.0.1:{port}/internal/v1/search")
    assert "not listening" in gone.value.why and "Connection refused" in gone.value.why
    assert 0.3 <= time.monotonic() - began < 1.5  # retried every 0.25 s within the 0.6 s


async def test_a_service_that_starts_listening_in_time_answers() -> None:
    port = free_port()
    http = HttpQueryServices(f"http://127.0.0.1:{port}", "http://127.0.0.1:1", TOKEN, 5.0)

    async def listen_later() -> asyncio.Server:
        await asyncio.sleep(0.4)
        body = b'{"vectors": [[1.0], [2.0]]}'
        ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok)
            await writer.drain()
            writer.close()

        return await asyncio.start_server(answer, "127.0.0.1", port)

    later = asyncio.create_task(listen_later())
    try:
        assert (await http.embed(EMBED)).vectors == [[1.0], [2.0]]
    finally:
        await http.aclose()
        server = await later
        server.close()
        await server.wait_closed()


async def test_a_dropped_connection_is_tried_once_more_then_unreachable() -> None:
    async with Canned("drop", (200, b'{"hits": [[]]}')) as canned:
        http = HttpQueryServices(canned.url, canned.url, TOKEN, 5.0)
        assert (await http.search(SEARCH)).hits == [[]] and len(canned.requests) == 2
        await http.aclose()
    async with Canned("drop") as canned:
        http = HttpQueryServices(canned.url, canned.url, TOKEN, 5.0)
        with pytest.raises(Unreachable, match=r"the connection failed \(ServerDisconnectedError: "):
            await http.search(SEARCH)
        await http.aclose()
        assert len(canned.requests) == 2


async def test_a_slow_service_is_unreachable_after_the_timeout() -> None:
    async with Canned("hang") as canned:
        http = HttpQueryServices(canned.url, canned.url, TOKEN, 0.2)
        with pytest.raises(Unreachable, match="no answer within 0s"):
            await http.embed(EMBED)
        await http.aclose()


@pytest.mark.parametrize(
    ("answer", "status", "detail"),
    [
        ((500, b"Internal Server Error"), 500, "Internal Server Error"),
        ((503, b'{"detail": "Qdrant unreachable: boom"}'), 503, "Qdrant unreachable: boom"),
        ((502, b""), 502, "(an empty body)"),
        ((200, b'{"vectors": "nope"}'), 200, "an answer that is not a EmbedResponse"),
    ],
)
async def test_an_error_or_junk_answer_is_refused_with_what_the_service_said(
    answer: tuple[int, bytes], status: int, detail: str
) -> None:
    async with Canned(answer) as canned:
        http = HttpQueryServices(canned.url, canned.url, TOKEN, 5.0)
        with pytest.raises(Refused) as refused:
            await http.embed(EMBED)
        await http.aclose()
    assert refused.value.status == status and refused.value.detail.startswith(detail)


async def test_every_call_carries_the_token_and_json_over_one_kept_alive_connection() -> None:
    async with Canned((200, b'{"hits": []}')) as canned:
        http = HttpQueryServices("http://i/", canned.url + "/", TOKEN, 5.0)
        await http.search(SEARCH)
        await http.search(SEARCH)
        await http.aclose()
    assert canned.requests[0][0].startswith(b"POST /internal/v1/search HTTP/1.1\r\n")
    assert canned.header(0, "authorization") == "Bearer s3cret-token"
    assert canned.header(0, "content-type") == "application/json"
    assert SearchRequest.model_validate_json(canned.requests[0][1]) == SEARCH
    assert len(canned.requests) == 2 and canned.connections == 1
