"""Combining the hits of several searches: reciprocal-rank fusion, or a weighted sum of scores."""

from __future__ import annotations

from featurebus.common.queries import SearchHit

__all__ = ["fuse"]

RRF_K = 60


def fuse(
    result_lists: list[list[SearchHit]], limit: int, method: str = "rrf", weights: list[float] | None = None
) -> list[SearchHit]:
    """One list keeps its scores and order; several are fused: ``rrf`` scores Σ wᵢ/(k + rankᵢ),
    ``weighted`` Σ wᵢ·scoreᵢ, over the searches that found the hit (weights 1 unless given).
    Ties keep the order in which the hits were first seen; a hit keeps the vectors of every search
    that found it."""
    if len(result_lists) == 1:
        return result_lists[0][:limit]
    weights = weights or [1.0] * len(result_lists)
    scores: dict[tuple[str, str], float] = {}
    first: dict[tuple[str, str], SearchHit] = {}
    for hits, weight in zip(result_lists, weights, strict=True):
        for rank, hit in enumerate(hits, start=1):
            key = (hit.collection_id, hit.document_id)
            part = hit.score if method == "weighted" else 1.0 / (RRF_K + rank)
            scores[key] = scores.get(key, 0.0) + weight * part
            seen = first.setdefault(key, hit)
            if seen is not hit and hit.vectors:  # found by another search too: keep its vector beside
                first[key] = seen.model_copy(update={"vectors": {**(seen.vectors or {}), **hit.vectors}})
    ranked = sorted(scores, key=lambda k: scores[k], reverse=True)[:limit]
    return [first[k].model_copy(update={"score": scores[k]}) for k in ranked]
