"""Inference's internal HTTP API: the query texts of a retriever execution, embedded at once, and
the requests of a plugin's infer endpoint.

``POST /internal/v1/embed`` (:class:`~featurebus.common.queries.EmbedRequest` →
:class:`~featurebus.common.queries.EmbedResponse`) calls :meth:`Inference.embed_queries
<featurebus.inference.processing.Inference.embed_queries>`, the one place the query path embeds; a
query its plugin cannot embed is a 422 :class:`~featurebus.common.queries.QueryRefusal` with the
plugin's message. ``POST /internal/v1/infer`` (:class:`~featurebus.common.queries.InferRequest`)
answers through the named real-time deployment. ``POST /internal/v1/rerank``
(:class:`~featurebus.common.queries.RerankRequest`) scores a rerank stage's candidates with a
reranker (:mod:`featurebus.inference.reranking`). ``POST /internal/v1/enrich``
(:class:`~featurebus.common.queries.EnrichRequest`) makes an LLM stage's calls, one per result
(:mod:`featurebus.inference.enrichment`). Every request needs the service token.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from pydantic import SecretStr

from featurebus.common.internal_api import ServiceTokenGuard
from featurebus.common.queries import (
    EMBED_PATH,
    ENRICH_PATH,
    INFER_PATH,
    RERANK_PATH,
    EmbedRequest,
    EmbedResponse,
    EnrichRequest,
    EnrichResponse,
    InferRequest,
    InferResponse,
    QueryRefusal,
    RerankRequest,
    RerankResponse,
)
from featurebus.inference.enrichment import EnrichFailed
from featurebus.inference.processing import EmbedFailed
from featurebus.inference.reranking import RerankFailed

__all__ = ["build_query_api"]

NO_FASTAPI_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


class Answers(Protocol):
    """What the API calls (:class:`~featurebus.inference.processing.Inference` in the service)."""

    async def embed_queries(self, request: EmbedRequest) -> EmbedResponse: ...

    async def infer(self, request: InferRequest) -> InferResponse: ...


class Scores(Protocol):
    """What the rerank route calls (:class:`~featurebus.inference.reranking.Rerankers` in the service)."""

    async def rerank(self, request: RerankRequest) -> RerankResponse: ...


class Enrichments(Protocol):
    """What the enrich route calls (:class:`~featurebus.inference.enrichment.Enricher` in the service)."""

    async def enrich(self, request: EnrichRequest) -> EnrichResponse: ...


def build_query_api(answers: Answers, rerankers: Scores, enricher: Enrichments, token: SecretStr | None) -> FastAPI:
    """The app, answering with ``answers``, ``rerankers`` and ``enricher``; every route behind the token."""
    # FastAPI's own telemetry is off: ServiceTokenGuard already gives each request its SERVER span
    # (continuing the caller's trace) and its duration, and FastAPI's second span, its operation
    # spans and its second histogram cost a query ~0.08 ms of CPU here for nothing new.
    app = FastAPI(
        title="featurebus inference (internal)",
        version="0.1.0",
        docs_url=None,
        redoc_url=None,
        telemetry=NO_FASTAPI_TELEMETRY,
    )
    app.add_middleware(ServiceTokenGuard, token=token, service="inference")

    @app.post(EMBED_PATH, response_model=EmbedResponse, responses={422: {"model": QueryRefusal}})
    async def embed_queries(request: EmbedRequest) -> EmbedResponse | JSONResponse:
        """One vector per query text, in order, each embedded by its plugin."""
        try:
            return await answers.embed_queries(request)
        except EmbedFailed as exc:
            return _refused(exc)

    @app.post(INFER_PATH, response_model=InferResponse, responses={422: {"model": QueryRefusal}})
    async def infer(request: InferRequest) -> InferResponse | JSONResponse:
        """realtime.py's answer to one request, through the plugin's real-time deployment."""
        try:
            return await answers.infer(request)
        except EmbedFailed as exc:
            return _refused(exc)

    @app.post(RERANK_PATH, response_model=RerankResponse, responses={422: {"model": QueryRefusal}})
    async def rerank(request: RerankRequest) -> RerankResponse | JSONResponse:
        """One score per document, in order, by the named reranker."""
        try:
            return await rerankers.rerank(request)
        except RerankFailed as exc:
            return _refused(exc)

    @app.post(ENRICH_PATH, response_model=EnrichResponse, responses={422: {"model": QueryRefusal}})
    async def enrich(request: EnrichRequest) -> EnrichResponse | JSONResponse:
        """One LLM answer (or error) per item, in order."""
        try:
            return await enricher.enrich(request)
        except EnrichFailed as exc:
            return _refused(exc)

    return app


def _refused(exc: EmbedFailed | RerankFailed | EnrichFailed) -> JSONResponse:
    refusal = QueryRefusal(detail=exc.message, hint=exc.hint)
    return JSONResponse(refusal.model_dump(exclude_none=True), status_code=422)
