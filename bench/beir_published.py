"""Published scores of the two builtin text models on the full BEIR collections (test split).

From MTEB's results repository (github.com/embeddings-benchmark/results, commit f4cc6c8, 2026-08-20):
``results/sentence-transformers__all-MiniLM-L6-v2/8b3219a92973c328a8e22fadcfa821b5dc75636a/<Task>.json``
and ``results/intfloat__multilingual-e5-small/fd1525a9fd15316a2d503bf26ab031a61d056e98/<Task>.json``,
``scores.test[0].ndcg_at_10`` and ``recall_at_100``. They are for the whole collection as MTEB runs
it (its own truncation and, for E5, its prompts), so a subset or another harness can differ by a
few points; they say whether a run is in the right range, not whether the platform lost anything
(the in-process baseline of the same run says that).
"""

from __future__ import annotations

__all__ = ["PUBLISHED", "SOURCE"]

SOURCE = "MTEB results (github.com/embeddings-benchmark/results @ f4cc6c8), full collection, test split"

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
E5 = "intfloat/multilingual-e5-small"

# BEIR directory name → model → (nDCG@10, recall@100)
PUBLISHED: dict[str, dict[str, tuple[float, float]]] = {
    "arguana": {MINILM: (0.5017, 0.9772), E5: (0.3909, 0.9132)},
    "climate-fever": {MINILM: (0.2027, 0.5204), E5: (0.2255, 0.5140)},
    "dbpedia-entity": {MINILM: (0.3233, 0.4327), E5: (0.3776, 0.4806)},
    "fever": {MINILM: (0.5193, 0.8505), E5: (0.7526, 0.9519)},
    "fiqa": {MINILM: (0.3687, 0.7061), E5: (0.3313, 0.6551)},
    "hotpotqa": {MINILM: (0.4651, 0.6336), E5: (0.6509, 0.8092)},
    "nfcorpus": {MINILM: (0.3159, 0.3115), E5: (0.3110, 0.2732)},
    "nq": {MINILM: (0.4387, 0.9033), E5: (0.5627, 0.9259)},
    "quora": {MINILM: (0.8755, 0.9944), E5: (0.8825, 0.9949)},
    "scidocs": {MINILM: (0.2164, 0.5101), E5: (0.1390, 0.3387)},
    "scifact": {MINILM: (0.6451, 0.9250), E5: (0.6758, 0.9283)},
    "trec-covid": {MINILM: (0.4723, 0.0855), E5: (0.7229, 0.1275)},
    "webis-touche2020": {MINILM: (0.1690, 0.4171), E5: (0.2116, 0.4352)},
}
