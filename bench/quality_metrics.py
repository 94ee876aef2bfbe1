"""Retrieval quality as trec_eval (and BEIR, through pytrec_eval) computes it: nDCG@k and recall@k.

Pure functions over a ranked list of document ids per query and graded judgments
(``qrels[query][doc] = grade``). trec_eval's definitions:

- **nDCG@k** (``ndcg_cut_k``): DCG = Σ gainᵢ / log2(i + 1) over the first k ranks, the gain being
  the judged grade itself (linear gain, not 2^grade - 1; unjudged and non-positive grades count 0),
  divided by the DCG of the judged grades sorted best first; 0 for a query with no positive grade.
- **recall@k** (``recall_k``): of the documents judged relevant (grade ≥ 1), the share in the first
  k ranks; 0 for a query with none.

A document ranked twice counts once, at its first rank. The mean is over the queries of ``qrels``
(trec_eval's ``-c``): a judged query the run did not answer scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["Qrels", "Run", "evaluate", "ndcg_at_k", "recall_at_k", "rrf"]

Qrels = Mapping[str, Mapping[str, int]]  # query id → document id → grade
Run = Mapping[str, Sequence[str]]  # query id → document ids, best first


def _first_k(ranked: Sequence[str], k: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            out.append(doc)
            if len(out) == k:
                break
    return out


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    gains = [max(judged.get(doc, 0), 0) for doc in _first_k(ranked, k)]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {doc for doc, grade in judged.items() if grade >= 1}
    if not relevant:
        return 0.0
    return len(relevant.intersection(_first_k(ranked, k))) / len(relevant)


def evaluate(run: Run, qrels: Qrels, ndcg_k: int = 10, recall_k: int = 100) -> dict[str, float]:
    """Mean nDCG@ndcg_k and recall@recall_k over the queries of ``qrels``."""
    if not qrels:
        raise ValueError("no judged queries to evaluate")
    ndcg = [ndcg_at_k(run.get(q, ()), judged, ndcg_k) for q, judged in qrels.items()]
    recall = [recall_at_k(run.get(q, ()), judged, recall_k) for q, judged in qrels.items()]
    return {f"ndcg@{ndcg_k}": sum(ndcg) / len(ndcg), f"recall@{recall_k}": sum(recall) / len(recall)}


def rrf(rankings: Sequence[Sequence[str]], limit: int, k: int = 60) -> list[str]:
    """Reciprocal-rank fusion as the registry fuses several searches (``registry.fusion``, equal
    weights): score Σ 1/(k + rank); ties keep the order in which the documents were first seen."""
    scores: dict[str, float] = {}
    for ranked in rankings:
        for rank, doc in enumerate(ranked, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda doc: scores[doc], reverse=True)[:limit]
