"""The port a retriever execution calls: inference embeds the query texts, the indexer searches.

A query is a direct call, not an event (DESIGN.md §1): :class:`HttpQueryServices` posts the
payloads of :mod:`featurebus.common.queries` to the two internal APIs over one keep-alive client
per service, with the service token and the caller's trace context (``traceparent``, in a CLIENT
span per call). The in-memory twin of the unit tests is in
``tests/registry_twins.py``. Either raises :class:`Unreachable` (no answer: down, busy, timed out)
or :class:`Refused` (the service answered that it cannot do it, with its reason).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, TypeVar

import httpx
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
from featurebus.common.traced_http import TracedTransport

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
    """The internal APIs over HTTP; each call waits at most ``timeout_s`` (connection retries
    included), an LLM stage's calls ``enrich_timeout_s``."""

    def __init__(
        self,
        inference_url: str,
        indexer_url: str,
        token: SecretStr | None,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        enrich_timeout_s: float | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.enrich_timeout_s = max(timeout_s, enrich_timeout_s or timeout_s)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=60)

        def client(url: str, service: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=url.rstrip("/"),
                headers=bearer(token),
                timeout=httpx.Timeout(self.enrich_timeout_s, connect=min(5.0, timeout_s)),
                transport=TracedTransport(
                    transport or httpx.AsyncHTTPTransport(limits=limits), f"featurebus-{service}"
                ),
            )

        self._clients = {"inference": client(inference_url, "inference"), "indexer": client(indexer_url, "indexer")}

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
        for http in self._clients.values():
            await http.aclose()

    async def _post(
        self, service: str, path: str, request: BaseModel, answer: type[Answer], timeout_s: float | None = None
    ) -> Answer:
        http = self._clients[service]
        url = f"{http.base_url}{path}"
        timeout_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + timeout_s
        body = request.model_dump_json().encode()
        headers = {"Content-Type": "application/json"}
        broken = 0
        while True:
            left = deadline - time.monotonic()
            try:
                response = await http.post(path, content=body, headers=headers, timeout=max(left, 0.01))
                break
            except httpx.ConnectError as exc:
                if time.monotonic() + CONNECT_RETRY_S >= deadline:
                    raise Unreachable(service, url, f"not listening ({exc or 'connection refused'})") from None
                await asyncio.sleep(CONNECT_RETRY_S)
            except httpx.TimeoutException:
                raise Unreachable(service, url, f"no answer within {timeout_s:.0f}s") from None
            except httpx.TransportError as exc:
                # A kept-alive connection the service closed (it restarted), or the service went
                # away mid-request: both calls only read, so one more try is safe.
                broken += 1
                if broken > 1:
                    raise Unreachable(service, url, f"the connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            raise _refusal(service, response)
        try:
            return answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise Refused(service, response.status_code, f"an answer that is not a {answer.__name__}: {exc}") from None


def _refusal(service: str, response: httpx.Response) -> Refused:
    """The service's own ``detail``/``hint`` when it sent them, else the status and the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        hint = body.get("hint")
        return Refused(service, response.status_code, body["detail"], hint if isinstance(hint, str) else None)
    return Refused(service, response.status_code, response.text[:300] or "(an empty body)")
