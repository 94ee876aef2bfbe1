"""The indexer's internal HTTP API: the registry's searches, answered straight from Qdrant.

``POST /internal/v1/search`` (:class:`~featurebus.common.queries.SearchRequest` →
:class:`~featurebus.common.queries.SearchResponse`) calls :func:`featurebus.indexer.searching.search`;
a search that cannot run is a 422 :class:`~featurebus.common.queries.QueryRefusal` naming the
search and the collection, Qdrant out of reach a 503. Every request needs the service token.
Reads only: the indexer's writes still come from Kafka.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import SecretStr

from featurebus.common.internal_api import ServiceTokenGuard
from featurebus.common.queries import SEARCH_PATH, QueryRefusal, SearchRequest, SearchResponse
from featurebus.indexer.qdrant_index import QdrantIndex, QdrantUnavailable
from featurebus.indexer.searching import SearchError, search

__all__ = ["build_search_api"]

log = logging.getLogger("featurebus.indexer")


def build_search_api(index: QdrantIndex, token: SecretStr | None) -> FastAPI:
    """The app; every route behind the service token."""
    app = FastAPI(title="featurebus indexer (internal)", version="0.1.0", docs_url=None, redoc_url=None)
    app.add_middleware(ServiceTokenGuard, token=token, service="indexer")

    @app.post(SEARCH_PATH, response_model=SearchResponse, responses={422: {"model": QueryRefusal}})
    async def search_vectors(request: SearchRequest) -> SearchResponse | JSONResponse:
        """Search every collection of each search by its named vector; hits per search, best first."""
        try:
            return await search(request, index)
        except SearchError as exc:
            log.warning("search request_id=%s refused: %s", request.request_id, exc)
            return JSONResponse(QueryRefusal(detail=str(exc)).model_dump(exclude_none=True), status_code=422)
        except QdrantUnavailable as exc:
            log.error("search request_id=%s: %s", request.request_id, exc)
            return JSONResponse(QueryRefusal(detail=str(exc)).model_dump(exclude_none=True), status_code=503)

    return app
