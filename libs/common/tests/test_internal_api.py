"""The internal APIs' service token and the server that runs them inside a service."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from featurebus.common.internal_api import InternalServer, ServiceTokenGuard, bearer, token_matches

TOKEN = SecretStr("the-token")


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def guarded(token: SecretStr | None = TOKEN) -> ServiceTokenGuard:
    return ServiceTokenGuard(Starlette(routes=[Route("/x", hello, methods=["GET", "POST"])]), token, "test")


@pytest.mark.parametrize(
    ("header", "token", "matches"),
    [
        ("Bearer the-token", TOKEN, True),
        ("bearer the-token", TOKEN, True),
        ("Bearer  the-token ", TOKEN, True),
        ("Bearer the-toke", TOKEN, False),
        ("Bearer the-token-and-more", TOKEN, False),
        ("Basic the-token", TOKEN, False),
        ("the-token", TOKEN, False),
        ("", TOKEN, False),
        (None, TOKEN, False),
        ("Bearer ", SecretStr(""), False),  # an empty token configured matches nothing
        ("Bearer None", None, False),
    ],
)
def test_token_matches_only_the_bearer_token(header: str | None, token: SecretStr | None, matches: bool) -> None:
    assert token_matches(header, token) is matches


def test_bearer_is_the_header_callers_send() -> None:
    assert bearer(TOKEN) == {"Authorization": "Bearer the-token"} == bearer("the-token")
    assert bearer(None) == {}


async def test_the_guard_lets_the_token_through_and_refuses_anything_else_with_401() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded()), base_url="http://svc") as http:
        ok = await http.get("/x", headers=bearer(TOKEN))
        missing = await http.post("/x")
        wrong = await http.get("/x", headers={"Authorization": "Bearer nope"})
        unknown_route = await http.get("/docs")  # nothing is served without the token, not even a 404
    assert ok.status_code == 200 and ok.json() == {"hello": "world"}
    for refused in (missing, wrong, unknown_route):
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {
            "detail": "the test internal API needs Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>",
            "hint": "give every service the same FEATUREBUS_INTERNAL_TOKEN",
        }


async def test_a_service_without_a_token_refuses_every_request() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded(None)), base_url="http://svc") as http:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            refused = await http.get("/x", headers=headers)
            assert refused.status_code == 401
            assert "has no FEATUREBUS_INTERNAL_TOKEN and refuses every request" in refused.json()["detail"]


@pytest.mark.integration
async def test_the_server_listens_in_the_running_loop_and_stops() -> None:
    server = InternalServer(guarded(), "127.0.0.1", 0, "test")
    await server.start()
    try:
        assert server.port > 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/x", headers=bearer(TOKEN))).json() == {"hello": "world"}
            assert (await http.get("/x")).status_code == 401
    finally:
        await server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/x", timeout=2)


@pytest.mark.integration
async def test_answers_are_not_held_back_by_nagle_and_delayed_acks() -> None:
    # Without TCP_NODELAY on the accepted sockets every answer (headers and body written apart)
    # waited ~40 ms for the client's delayed ACK; a keep-alive round trip here takes ~1 ms.
    server = InternalServer(guarded(), "127.0.0.1", 0, "test")
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=bearer(TOKEN)) as http:
            times = []
            for _ in range(20):
                began = time.perf_counter()
                assert (await http.post("/x", content=b"{}")).status_code == 200
                times.append(time.perf_counter() - began)
    finally:
        await server.stop()
    assert sorted(times)[10] < 0.03, times


@pytest.mark.integration
async def test_a_port_in_use_fails_the_start_naming_the_address_and_the_settings() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = InternalServer(guarded(), "127.0.0.1", port, "indexer")
        with pytest.raises(
            RuntimeError, match=rf"indexer internal API cannot listen on 127.0.0.1:{port}: .*FEATUREBUS_INDEXER_PORT"
        ):
            await server.start()
