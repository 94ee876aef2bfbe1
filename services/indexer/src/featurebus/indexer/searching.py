"""Answer a search: search each collection by the named vector, merge the hits by score.

A search may give, instead of a vector, a stored document (``like``: "more like this"): its own
vector of the feature is the query, and it is left out of what it finds. Called by the internal
search API (:mod:`featurebus.indexer.search_api`); no HTTP or Kafka here.
"""

from __future__ import annotations

import json

from qdrant_client.http.exceptions import UnexpectedResponse

from featurebus.common import ids
from featurebus.common.queries import SearchHit, SearchRequest, SearchResponse, VectorSearch
from featurebus.indexer.qdrant_index import QdrantIndex, collection_name, payload_filter

__all__ = ["SearchError", "search"]

# Qdrant scores these as distances (smaller is nearer); every other metric as similarity.
_DISTANCE_SCORED = frozenset({"euclid", "manhattan"})


class SearchError(ValueError):
    """A search cannot run as asked; the message says which search, which collection and why."""


async def search(request: SearchRequest, index: QdrantIndex) -> SearchResponse:
    """Hits per search (best first, at most ``limit``); SearchError naming what is wrong."""
    if request.limit <= 0:
        raise SearchError(f"limit must be positive, got {request.limit}")
    try:
        payload_filter(request.filters, request.where)  # validate once, before any search
        hits = [await _search(n, s, request, index) for n, s in enumerate(request.searches)]
    except SearchError:
        raise
    except ValueError as exc:  # a filter value, or a query Qdrant's local mode refuses
        raise SearchError(str(exc)) from None
    except UnexpectedResponse as exc:  # a query a Qdrant server refuses (a 4xx: 5xx are unavailability)
        raise SearchError(f"Qdrant refused the search ({exc.status_code}): {_said(exc)}") from None
    return SearchResponse(hits=hits)


async def _search(number: int, search: VectorSearch, request: SearchRequest, index: QdrantIndex) -> list[SearchHit]:
    name = search.feature_name
    label = f"search {number} ({name!r})"
    vector, source = search.vector, None
    if search.like is not None:
        vector, source = await _liked(label, search, index)
    merged: list[SearchHit] = []
    by_distance = False
    for cid in search.collection_ids:
        schema = await index.schema(cid)
        if schema is None:
            raise SearchError(
                f"{label}: collection {cid} does not exist in the index (Qdrant collection {collection_name(cid)}); "
                "create it, or remove it from the retriever's collection_identifiers"
            )
        spec = schema.get(name)
        if spec is None:
            raise SearchError(
                f"{label}: collection {cid} has no vector named {name!r} (it has {sorted(schema)}); "
                "check the feature_uri of the retriever's feature_search stage"
            )
        if spec.size != len(vector):
            raise SearchError(
                f"{label}: the query vector has dimension {len(vector)} but vector {name!r} of "
                f"collection {cid} has {spec.size}; the query must be embedded by the same extractor"
            )
        by_distance = spec.distance in _DISTANCE_SCORED
        merged.extend(
            await index.search(
                cid,
                name,
                vector,
                request.limit,
                request.filters,
                request.where,
                with_vector=request.with_vectors,
                leave_out=source[1] if source and source[0] == cid else None,
            )
        )
    # Keep Qdrant's scores; order the merged list the way Qdrant orders each collection's hits.
    merged.sort(key=lambda hit: hit.score, reverse=not by_distance)
    return merged[: request.limit]


async def _liked(label: str, search: VectorSearch, index: QdrantIndex) -> tuple[list[float], tuple[str, str]]:
    """The liked document's vector of the feature, and (its collection, its point id)."""
    like = search.like
    assert like is not None
    where = [like.collection_id] if like.collection_id else search.collection_ids
    for cid in where:
        if await index.schema(cid) is None:
            continue
        point = ids.point_id(cid, like.document_id, like.plugin_id)
        vector = await index.vector_of(cid, point, search.feature_name)
        if vector:
            return vector, (cid, point)
    raise SearchError(
        f"{label}: document {like.document_id} has no vector {search.feature_name!r} in collection(s) {where}; "
        "give the document_id of a result of this feature (and its collection_id)"
    )


def _said(exc: UnexpectedResponse) -> str:
    """What the server said about the request: its error message, else its raw answer (trimmed)."""
    try:
        status = json.loads(exc.content).get("status", {})
        return str(status.get("error") if isinstance(status, dict) else status)[:500]
    except (ValueError, AttributeError):
        return exc.content.decode(errors="replace")[:500] or exc.reason_phrase
