"""Answer a retrieval: search each collection by the named vector, merge the hits by score."""

from __future__ import annotations

import logging

from featurebus.common import ids
from featurebus.common.events import RetrievalAnswered, RetrievalEmbedded, SearchHit, SearchSpec
from featurebus.indexer.qdrant_index import QdrantIndex, collection_name, payload_filter

__all__ = ["SearchError", "answer_retrieval"]

log = logging.getLogger("featurebus.indexer")

# Qdrant scores these as distances (smaller is nearer); every other metric as similarity.
_DISTANCE_SCORED = frozenset({"euclid", "manhattan"})


class SearchError(ValueError):
    """A search cannot run as asked; the message says which search, which collection and why."""


async def answer_retrieval(event: RetrievalEmbedded, index: QdrantIndex) -> RetrievalAnswered:
    """Hits per search (best first, at most ``limit``), or an error naming what is wrong."""
    event_id = ids.deterministic_id("evt", event.event_id, "answered")
    try:
        if event.limit <= 0:
            raise SearchError(f"limit must be positive, got {event.limit}")
        payload_filter(event.filters)  # validate once, before any search
        hits = [await _search(number, search, event, index) for number, search in enumerate(event.searches)]
    except (SearchError, ValueError) as exc:
        log.warning("retrieval request_id=%s failed: %s", event.request_id, exc)
        return RetrievalAnswered(event_id=event_id, request_id=event.request_id, error=str(exc))
    return RetrievalAnswered(event_id=event_id, request_id=event.request_id, hits=hits)


async def _search(number: int, search: SearchSpec, event: RetrievalEmbedded, index: QdrantIndex) -> list[SearchHit]:
    name = search.feature_name
    label = f"search {number} ({name!r})"
    if search.vector is None:
        raise SearchError(f"{label} has no query vector: inference did not embed {search.query_text!r}")
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
        if spec.size != len(search.vector):
            raise SearchError(
                f"{label}: the query vector has dimension {len(search.vector)} but vector {name!r} of "
                f"collection {cid} has {spec.size}; the query must be embedded by the same extractor"
            )
        by_distance = spec.distance in _DISTANCE_SCORED
        merged.extend(await index.search(cid, name, search.vector, event.limit, event.filters))
    # Keep Qdrant's scores; order the merged list the way Qdrant orders each collection's hits.
    merged.sort(key=lambda hit: hit.score, reverse=not by_distance)
    return merged[: event.limit]
