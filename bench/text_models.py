"""The builtin text embedder's fast path against its reference, on the same texts, in one run.

    .venv/bin/python bench/text_models.py [--texts 2000] [--queries 200] [--rounds 3]

Fast path: all-MiniLM-L6-v2 as int8 ONNX on ONNX Runtime (``MiniLMBatch(engine="onnx")``, the
default); reference: sentence-transformers on torch fp32 (``engine="torch"``). Both warm before
timing, timed in alternating rounds so that machine noise falls on both; texts go 64 to a call (a
frame), queries one to a call (a retriever query). Prints the medians, the reference / fast ratio
(2.0: the fast path takes half the time) and how close the vectors are (cosine, worst and mean).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd

from featurebus.sdk import get_batch_service


def texts(n: int, salt: str = "") -> list[str]:
    subjects = ["The committee", "A hiker", "Our database", "The orchestra", "My neighbour", "The satellite"]
    verbs = ["reviewed", "crossed", "migrated", "rehearsed", "painted", "photographed"]
    objects = ["the budget", "the ridge", "the tables", "a symphony", "the fence", "a galaxy"]
    tails = ["", " after a long and careful discussion of every alternative that was put forward", " twice"]
    return [
        f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 6]} on day {i}{salt}{tails[i % 3]}."
        for i in range(n)
    ]


def timed(service: Any, batches: list[pd.DataFrame]) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    out = [service(batch.copy())["embedding"].tolist() for batch in batches]
    return time.perf_counter() - began, np.array([v for chunk in out for v in chunk])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    minilm = get_batch_service("sentence-transformers/all-MiniLM-L6-v2")
    engines = {"onnx": minilm({"engine": "onnx"}), "torch": minilm({"engine": "torch"})}
    corpus = texts(args.texts)
    frames = [pd.DataFrame({"data": corpus[i : i + 64]}) for i in range(0, len(corpus), 64)]
    queries = [pd.DataFrame({"data": [q]}) for q in texts(args.queries, salt=" (a query)")]
    for service in engines.values():  # warm: model loaded, first calls done
        timed(service, frames[:1] + queries[:5])
    seconds: dict[str, dict[str, list[float]]] = {e: {"frames": [], "queries": []} for e in engines}
    vectors: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
        for engine in order:
            took, vectors[engine] = timed(engines[engine], frames)
            seconds[engine]["frames"].append(took)
            seconds[engine]["queries"].append(timed(engines[engine], queries)[0])
    cosines = (vectors["onnx"] * vectors["torch"]).sum(axis=1)
    median = {e: {k: statistics.median(v) for k, v in s.items()} for e, s in seconds.items()}
    result = {
        "texts": args.texts,
        "queries": args.queries,
        "texts_per_s": {e: round(args.texts / m["frames"], 1) for e, m in median.items()},
        "ms_per_query": {e: round(1000 * m["queries"] / args.queries, 2) for e, m in median.items()},
        "ratio_frames": round(median["torch"]["frames"] / median["onnx"]["frames"], 2),
        "ratio_queries": round(median["torch"]["queries"] / median["onnx"]["queries"], 2),
        "cosine_min": round(float(cosines.min()), 5),
        "cosine_mean": round(float(cosines.mean()), 5),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
