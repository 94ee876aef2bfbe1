"""The port a retriever execution calls: inference embeds the query texts, the indexer searches.

A query is a direct call, not an event (DESIGN.md §1): :class:`HttpQueryServices` posts the
payloads of :mod:`featurebus.common.queries` to the two internal APIs over one keep-alive client
per service (aiohttp: about a third of httpx's CPU per call), with the service token and the
caller's trace context (``traceparent``, in a CLIENT span per call). The in-memory twin of the unit tests is in
``tests/registry_twins.py``. Either raises :class:`Unreachable` (no answer: down, busy, timed out)
or :class:`Refused` (the service answered that it cannot do it, with its reason).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Protocol, TypeVar

import aiohttp
from opentelemetry.trace import StatusCode
from pydantic import BaseModel, SecretStr, ValidationError

from featurebus.common.internal_api import bearer
from featurebus.common.queries import (
    EMBED_PATH,
    ENRICH_PATH,
    INFER_PATH,
    RERANK_PATH,
    SEARCH_PATH,
    EmbedRequest,
    EmbedResponse,
    EnrichRequest,
    EnrichResponse,
    InferRequest,
    InferResponse,
    RerankRequest,
    RerankResponse,
    SearchRequest,
    SearchResponse,
)
from featurebus.common.telemetry import client_span, inject_trace

__all__ = ["HttpQueryServices", "QueryServices", "Refused", "Unreachable"]

Answer = TypeVar("Answer", bound=BaseModel)

# A refused connection is retried this often until the deadline: a service that is (re)starting
# answers as soon as it listens, as a Kafka consumer would have picked the request up.
CONNECT_RETRY_S = 0.25


class Unreachable(Exception):
    """``service`` gave no answer: not listening, gone mid-request, or too slow."""

    def __init__(self, service: str, url: str, why: str) -> None:
        super().__init__(f"{service} at {url}: {why}")
        self.service, self.url, self.why = service, url, why


class Refused(Exception):
    """``service`` answered with an error: what it said (``detail``, ``hint``) and the status."""

    def __init__(self, service: str, status: int, detail: str, hint: str | None = None) -> None:
        super().__init__(f"{service} answered {status}: {detail}")
        self.service, self.status, self.detail, self.hint = service, status, detail, hint


class QueryServices(Protocol):
    """What retriever executions need of inference and the indexer."""

    async def embed(self, request: EmbedRequest) -> EmbedResponse: ...

    async def search(self, request: SearchRequest) -> SearchResponse: ...

    async def infer(self, request: InferRequest) -> InferResponse:
        """A plugin's infer endpoint: one request through its real-time deployment."""
        ...

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        """A rerank stage: one score per document by a reranker of inference."""
        ...

    async def enrich(self, request: EnrichRequest) -> EnrichResponse:
        """An LLM stage: one answer (or error) per result, by the operator's LLM provider."""
        ...


class HttpQueryServices:
    """The internal APIs over HTTP (aiohttp: a keep-alive connection pool per service, made on the
    first call, inside the running loop); each call waits at most ``timeout_s`` (connection retries
    included), an LLM stage's calls ``enrich_timeout_s``.

    Each request (each retry too) is one CLIENT span named ``POST /path`` whose context goes in the
    ``traceparent`` header, as :class:`featurebus.common.traced_http.TracedTransport` does for httpx.
    """

    def __init__(
        self,
        inference_url: str,
        indexer_url: str,
        token: SecretStr | None,
        timeout_s: float,
        enrich_timeout_s: float | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.enrich_timeout_s = max(timeout_s, enrich_timeout_s or timeout_s)
        self._urls = {"inference": inference_url.rstrip("/"), "indexer": indexer_url.rstrip("/")}
        self._headers = {**bearer(token), "Content-Type": "application/json"}
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        return await self._post("inference", EMBED_PATH, request, EmbedResponse)

    async def search(self, request: SearchRequest) -> SearchResponse:
        return await self._post("indexer", SEARCH_PATH, request, SearchResponse)

    async def infer(self, request: InferRequest) -> InferResponse:
        return await self._post("inference", INFER_PATH, request, InferResponse)

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        return await self._post("inference", RERANK_PATH, request, RerankResponse)

    async def enrich(self, request: EnrichRequest) -> EnrichResponse:
        return await self._post("inference", ENRICH_PATH, request, EnrichResponse, self.enrich_timeout_s)

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    def _session(self, service: str) -> aiohttp.ClientSession:
        session = self._sessions.get(service)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=64, keepalive_timeout=60, use_dns_cache=True)
            session = aiohttp.ClientSession(connector=connector, headers=self._headers, trust_env=False)
            self._sessions[service] = session
        return session

    async def _post(
        self, service: str, path: str, request: BaseModel, answer: type[Answer], timeout_s: float | None = None
    ) -> Answer:
        url = f"{self._urls[service]}{path}"
        timeout_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + timeout_s
        body = request.model_dump_json().encode()
        broken = 0
        while True:
            left = deadline - time.monotonic()
            try:
                status, content = await self._send(service, path, url, body, max(left, 0.01))
                break
            except aiohttp.ClientConnectorError as exc:
                if time.monotonic() + CONNECT_RETRY_S >= deadline:
                    raise Unreachable(service, url, f"not listening ({_why_not(exc)})") from None
                await asyncio.sleep(CONNECT_RETRY_S)
            except TimeoutError:
                raise Unreachable(service, url, f"no answer within {timeout_s:.0f}s") from None
            except aiohttp.ClientError as exc:
                # A kept-alive connection the service closed (it restarted), or the service went
                # away mid-request: both calls only read, so one more try is safe.
                broken += 1
                if broken > 1:
                    raise Unreachable(service, url, f"the connection failed ({type(exc).__name__}: {exc})") from None
        if status != 200:
            raise _refusal(service, status, content)
        try:
            return answer.model_validate_json(content)
        except ValidationError as exc:
            raise Refused(service, status, f"an answer that is not a {answer.__name__}: {exc}") from None

    async def _send(self, service: str, path: str, url: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """One request in its CLIENT span: the status and the body."""
        attributes = {"peer.service": f"featurebus-{service}", "http.request.method": "POST"}
        with client_span(f"POST {path}", **attributes) as span:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with self._session(service).post(url, data=body, headers=inject_trace(), timeout=timeout) as got:
                content = await got.read()
            span.set_attribute("http.response.status_code", got.status)
            if got.status >= 500:
                span.set_status(StatusCode.ERROR)
            return got.status, content


def _why_not(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection failed, as the OS said it (``[Errno 111] Connection refused``)."""
    number = exc.os_error.errno
    return f"[Errno {number}] {os.strerror(number)}" if number else str(exc) or "connection refused"


def _refusal(service: str, status: int, content: bytes) -> Refused:
    """The service's own ``detail``/``hint`` when it sent them, else the status and the start of the body."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        hint = body.get("hint")
        return Refused(service, status, body["detail"], hint if isinstance(hint, str) else None)
    return Refused(service, status, content[:300].decode("utf-8", "replace") or "(an empty body)")
