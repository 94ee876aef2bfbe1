"""Combining the hits of several searches: reciprocal-rank fusion."""

from __future__ import annotations

from featurebus.common.queries import SearchHit

__all__ = ["fuse"]

RRF_K = 60


def fuse(result_lists: list[list[SearchHit]], limit: int) -> list[SearchHit]:
    """One list keeps its scores and order; several are fused by RRF (score = Σ 1/(k + rank))."""
    if len(result_lists) == 1:
        return result_lists[0][:limit]
    scores: dict[tuple[str, str], float] = {}
    first: dict[tuple[str, str], SearchHit] = {}
    for hits in result_lists:
        for rank, hit in enumerate(hits, start=1):
            key = (hit.collection_id, hit.document_id)
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(key, hit)
    ranked = sorted(scores, key=lambda k: scores[k], reverse=True)[:limit]
    return [first[k].model_copy(update={"score": scores[k]}) for k in ranked]
