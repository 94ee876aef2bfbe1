"""Retrieval quality through the platform against the same models in one process: nDCG@10, recall@100.

    .venv/bin/python bench/retrieval_quality.py [--data DIR] [--collection NAME] [--engine onnx|torch]
                                                [--queries N] [--rerank-top-n 100] [--json] [--keep DIR]

Reads a test collection in BEIR's layout (``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``;
default: ``bench/data/featurebus_mini``, a small labelled set written for featurebus by its
developers; ``--data`` takes any BEIR directory an operator downloaded, e.g. BEIR's SciFact).
Starts a private local stack and the five services (free ports, a temp dir), uploads two plugins
that each run a builtin text embedder (``bench/quality_plugins.py``: all-MiniLM-L6-v2 and
multilingual-e5-small), indexes every document (title and text, as BEIR's dense models join them)
into one collection with both, and executes, for every judged query, one retriever per setting
(100 results):

- ``feature_search`` with MiniLM alone, and with E5 alone;
- ``fusion``: one ``feature_search`` with both searches, fused by RRF;
- ``rerank``: MiniLM's first ``--rerank-top-n`` (100) re-scored by the ``rerank`` stage with
  multilingual-e5-small, the rest after them in their order. A platform that refuses the stage
  (422 at creation) is reported as such, with its reason, and not scored.

The baseline, computed in the same run once the platform is stopped, is the same models in this
process (the same builtin services, ``--engine`` for MiniLM, documents in frames of 64 as the
plugin gets them, each query alone as a retriever sends it), cosine with numpy over the same
documents, top 100, then the same RRF (k=60) and the same E5 re-scoring of MiniLM's first ones. The
platform must not lose quality: the same nDCG@10, to 3 decimals, as the same models in-process.
Metrics are trec_eval's (``quality_metrics.py``, graded, linear gain). Also printed: MiniLM on
sentence-transformers fp32 in-process (the reference the fast path is held to), and the models'
published scores on the full collection where MTEB has them (``beir_published.py``).

The platform's reranker re-embeds every candidate on one thread (~6 s for 100 short
passages), so on a large collection ``--queries`` and ``--rerank-top-n`` keep a run to minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurebus.sdk.client import ApiError, Client

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "bench" / "data" / "featurebus_mini"
TOP_K = 100  # results per query: recall@100 needs them, and the rerank stage re-scores them all
FRAME = 64  # the plugins' compute_profile.batch_size
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from _procs import local_platform  # noqa: E402  (bench/ is the script's directory)
from beir_format import Collection, load_collection  # noqa: E402
from beir_published import PUBLISHED, SOURCE  # noqa: E402
from quality_metrics import evaluate, rrf  # noqa: E402
from quality_plugins import E5, MINILM, PLUGINS, QualityPlugin  # noqa: E402

Ranked = dict[str, list[str]]  # query id → corpus ids, best first


def search_stage(plugins: tuple[QualityPlugin, ...], fusion: str | None = None) -> dict[str, Any]:
    searches = [{"feature_uri": p.feature_uri, "query": "{{INPUT.query}}"} for p in plugins]
    parameters: dict[str, Any] = {"searches": searches, **({"fusion": fusion} if fusion else {})}
    return {
        "stage_name": "search",
        "stage_type": "filter",
        "config": {"stage_id": "feature_search", "parameters": parameters},
    }


def rerank_stage(top_n: int) -> dict[str, Any]:
    """The stage of issue 12: E5 re-scores the first ``top_n`` results by their payload ``text``."""
    parameters = {"model": E5.model, "query": "{{INPUT.query}}", "top_n": top_n, "text_field": "text"}
    return {"stage_name": "rerank", "stage_type": "sort", "config": {"stage_id": "rerank", "parameters": parameters}}


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    stages: list[dict[str, Any]]
    models: tuple[str, ...]  # whose published scores apply (one model alone)


def settings(rerank_top_n: int) -> tuple[Setting, ...]:
    return (
        Setting("minilm", "feature_search MiniLM", [search_stage((MINILM,))], (MINILM.model,)),
        Setting("e5", "feature_search E5", [search_stage((E5,))], (E5.model,)),
        Setting("fusion", "fusion MiniLM + E5 (rrf)", [search_stage((MINILM, E5), fusion="rrf")], ()),
        Setting(
            "rerank",
            f"MiniLM, rerank E5 (top {rerank_top_n})",
            [search_stage((MINILM,)), rerank_stage(rerank_top_n)],
            (),
        ),
    )


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- the platform


@contextlib.contextmanager
def platform(data_dir: Path) -> Iterator[Client]:
    """A client of the local platform, started for the run and stopped after it."""
    with local_platform(data_dir) as running, Client(running.base_url, running.key, timeout=120) as fb:
        yield fb


def index(fb: Client, collection: Collection, engine: str) -> tuple[str, dict[str, str]]:
    """Both plugins, a bucket of the documents and one collection with both, indexed: the
    namespace id and object id → corpus id."""
    ns = fb.create_namespace(f"quality-{uuid.uuid4().hex[:6]}")["namespace_id"]
    for plugin in PLUGINS:
        plugin_id = fb.upload_plugin(ns, plugin.archive(), plugin.name, plugin.version)["plugin_id"]
        scan = fb.wait_for_scan(ns, plugin_id)["scan"]
        assert scan["status"] == "passed", f"{plugin.name}: the scan refused it: {scan}"
        fb.deploy_for_batch(ns, plugin_id)
    bucket = fb.create_bucket(ns, "corpus", {"text": {"type": "text"}})["bucket_id"]
    doc_ids = list(collection.corpus)
    object_ids = fb.add_texts(ns, bucket, [collection.document_text(d) for d in doc_ids])
    extractors = [
        {
            "feature_extractor_name": p.name,
            "version": p.version,
            "parameters": {"engine": engine} if p is MINILM else {},
        }
        for p in PLUGINS
    ]
    body = {"name": "corpus", "feature_extractors": extractors, "source": {"type": "bucket", "bucket_ids": [bucket]}}
    col = fb.request("POST", f"/v1/namespaces/{ns}/collections", json=body)["collection_id"]
    batch = fb.trigger_batch(ns, bucket, [col])
    done = fb.wait_for_batch(ns, bucket, batch["batch_id"], timeout=1800, every=1.0)
    assert done["status"] == "COMPLETED" and not done.get("rows_failed"), done
    return ns, dict(zip(object_ids, doc_ids, strict=True))


def platform_runs(fb: Client, collection: Collection, engine: str, chosen: tuple[Setting, ...]) -> dict[str, Any]:
    """Per setting: the ranked corpus ids of every query, or why the platform refused the retriever."""
    began = time.perf_counter()
    ns, corpus_id = index(fb, collection, engine)
    log(f"platform: {len(collection.corpus)} documents indexed by both plugins in {time.perf_counter() - began:.1f}s")
    out: dict[str, Any] = {"index_s": round(time.perf_counter() - began, 1)}
    for setting in chosen:
        body = {"name": f"quality-{setting.key}", "stages": setting.stages}
        try:
            retriever = fb.request("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"]
        except ApiError as exc:
            if exc.status != 422:
                raise
            out[setting.key] = {"refused": exc.detail}
            log(f"{setting.key}: refused by the platform: {exc.detail}")
            continue
        path = f"/v1/namespaces/{ns}/retrievers/{retriever}/execute"

        def execute(text: str, path: str = path) -> list[str]:
            answer = fb.request("POST", path, json={"input": {"query": text}, "limit": TOP_K})
            return [corpus_id[hit["object_id"]] for hit in answer["results"]]

        execute(next(iter(collection.queries.values())))  # warm: the plugins' query path, the reranker
        took = time.perf_counter()
        ranked = {q: execute(text) for q, text in collection.queries.items()}
        ms = (time.perf_counter() - took) * 1000 / len(ranked)
        out[setting.key] = {"ranked": ranked, "ms_per_query": round(ms, 1)}
        log(f"{setting.key}: {len(ranked)} queries, {ms:.0f} ms a query")
    return out


# ---------------------------------------------------------------------------------- the baseline


class Embedder:
    """A builtin batch service in this process, called as the platform calls the plugin's step."""

    def __init__(self, model: str, config: dict[str, Any] | None = None) -> None:
        from featurebus.sdk import get_batch_service

        self.service = get_batch_service(model)({"text_column": "data", "output_column_name": "v", **(config or {})})

    def __call__(self, texts: list[str], query: bool) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame({"data": texts, "blob_property": ["query" if query else "text"] * len(texts)})
        vectors = np.asarray(self.service(frame)["v"].tolist(), dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def documents(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self(texts[i : i + FRAME], query=False) for i in range(0, len(texts), FRAME)])

    def queries(self, texts: list[str]) -> np.ndarray:
        return np.concatenate([self([t], query=True) for t in texts])  # one a request, as a retriever sends it


def top(scores: np.ndarray, doc_ids: list[str], k: int = TOP_K) -> list[str]:
    return [doc_ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def baseline_runs(collection: Collection, engine: str, rerank_top_n: int) -> dict[str, Ranked]:
    """The same models and the same stages' arithmetic, in this process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    doc_ids, query_ids = list(collection.corpus), list(collection.queries)
    texts = [collection.document_text(d) for d in doc_ids]
    queries = list(collection.queries.values())

    def vectors(embed: Embedder) -> tuple[np.ndarray, np.ndarray]:
        return embed.documents(texts), embed.queries(queries)

    began = time.perf_counter()
    minilm_d, minilm_q = vectors(Embedder(MINILM.model, {"engine": engine}))
    e5_d, e5_q = vectors(Embedder(E5.model))
    runs: dict[str, Ranked] = {"minilm": {}, "e5": {}, "fusion": {}, "rerank": {}}
    for i, q in enumerate(query_ids):
        by_minilm, by_e5 = top(minilm_d @ minilm_q[i], doc_ids), top(e5_d @ e5_q[i], doc_ids)
        runs["minilm"][q], runs["e5"][q] = by_minilm, by_e5
        runs["fusion"][q] = rrf([by_minilm, by_e5], TOP_K)
        # The rerank stage: E5's cosine of the query and each of MiniLM's first (stable on ties),
        # the rest after them in their order.
        e5_score = dict(zip(doc_ids, (e5_d @ e5_q[i]).tolist(), strict=True))
        head, tail = by_minilm[:rerank_top_n], by_minilm[rerank_top_n:]
        runs["rerank"][q] = sorted(head, key=lambda d: -e5_score[d]) + tail
    if engine != "torch":
        ref_d, ref_q = vectors(Embedder(MINILM.model, {"engine": "torch"}))
        runs["minilm_reference"] = {q: top(ref_d @ ref_q[i], doc_ids) for i, q in enumerate(query_ids)}
    log(
        f"in-process: both models over {len(doc_ids)} documents and {len(query_ids)} queries in {time.perf_counter() - began:.1f}s"
    )
    return runs


# ---------------------------------------------------------------------------------- the report


def same_top10(a: Ranked, b: Ranked) -> int:
    return sum(a.get(q, [])[:10] == b.get(q, [])[:10] for q in b)


def report(
    collection: Collection,
    name: str,
    engine: str,
    chosen: tuple[Setting, ...],
    plat: dict[str, Any],
    base: dict[str, Ranked],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for setting in chosen:
        mine = plat[setting.key]
        inproc = evaluate(base[setting.key], collection.qrels)
        row: dict[str, Any] = {"setting": setting.key, "label": setting.label, "in_process": inproc}
        if "refused" in mine:
            row["platform"] = None
            row["refused"] = mine["refused"]
        else:
            got = evaluate(mine["ranked"], collection.qrels)
            row["platform"] = got
            row["ndcg@10_difference"] = got["ndcg@10"] - inproc["ndcg@10"]
            row["same_ndcg@10_to_3_decimals"] = round(got["ndcg@10"], 3) == round(inproc["ndcg@10"], 3)
            row["queries_with_same_top10"] = same_top10(mine["ranked"], base[setting.key])
            row["ms_per_query"] = mine["ms_per_query"]
        published = PUBLISHED.get(name, {})
        row["published_full_collection"] = {
            m: {"ndcg@10": published[m][0], "recall@100": published[m][1]} for m in setting.models if m in published
        }
        rows.append(row)
    out: dict[str, Any] = {
        "collection": name,
        "documents": len(collection.corpus),
        "queries": len(collection.queries),
        "minilm_engine": engine,
        "index_s": plat["index_s"],
        "settings": rows,
    }
    if "minilm_reference" in base:
        out["minilm_sentence_transformers_fp32_in_process"] = evaluate(base["minilm_reference"], collection.qrels)
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['collection']}: {result['documents']} documents, {result['queries']} judged queries; "
        f"MiniLM engine {result['minilm_engine']}; top {TOP_K} per query",
        f"{'setting':<30} | nDCG@10 | recall@100 | in-process nDCG@10 | in-process recall@100 | difference | same to 3 dp",
    ]
    for row in result["settings"]:
        inproc = row["in_process"]
        if row["platform"] is None:
            lines.append(f"{row['setting']}: not available ({row['refused']})")
            lines.append(
                f"{row['label']:<30} | {'-':>7} | {'-':>10} | {inproc['ndcg@10']:>18.3f} | {inproc['recall@100']:>21.3f} |"
            )
            continue
        got = row["platform"]
        lines.append(
            f"{row['label']:<30} | {got['ndcg@10']:>7.3f} | {got['recall@100']:>10.3f} | {inproc['ndcg@10']:>18.3f} | "
            f"{inproc['recall@100']:>21.3f} | {row['ndcg@10_difference']:>+10.4f} | "
            f"{'yes' if row['same_ndcg@10_to_3_decimals'] else 'NO'} ({row['queries_with_same_top10']}/{result['queries']} "
            "same top 10)"
        )
    ref = result.get("minilm_sentence_transformers_fp32_in_process")
    if ref:
        lines.append(
            f"in-process only: MiniLM on sentence-transformers fp32 (the fast path's reference) "
            f"nDCG@10 {ref['ndcg@10']:.3f}, recall@100 {ref['recall@100']:.3f}"
        )
    published = [
        (row["label"], m, s) for row in result["settings"] for m, s in row["published_full_collection"].items()
    ]
    if published:
        lines.append(f"published, for the full {result['collection']} collection ({SOURCE}):")
        lines += [f"  {m}: nDCG@10 {s['ndcg@10']:.3f}, recall@100 {s['recall@100']:.3f}" for _, m, s in published]
    else:
        lines.append(f"published: none for {result['collection']!r} (known: {', '.join(sorted(PUBLISHED))})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="a BEIR-format collection directory")
    parser.add_argument("--collection", help="its BEIR name, for the published scores (default: the directory's name)")
    parser.add_argument("--engine", choices=("onnx", "torch"), default="onnx", help="MiniLM's engine, in both")
    parser.add_argument("--queries", type=int, help="judge only the first N judged queries (default: all)")
    parser.add_argument("--rerank-top-n", type=int, default=TOP_K, help="results the rerank stage re-scores")
    parser.add_argument("--json", action="store_true", help="print one JSON object (the table goes to stderr)")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep its logs (default: a temp dir)")
    args = parser.parse_args()
    began = time.perf_counter()
    collection = load_collection(args.data.resolve()).first_queries(args.queries)
    rerank_top_n = min(max(args.rerank_top_n, 1), TOP_K)
    chosen = settings(rerank_top_n)
    log(f"{collection.name}: {len(collection.corpus)} documents, {len(collection.queries)} judged queries")

    def run(work: Path) -> dict[str, Any]:
        with platform(work) as fb:
            return platform_runs(fb, collection, args.engine, chosen)

    if args.keep:
        plat = run(args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="fb-bench-quality-") as tmp:
            plat = run(Path(tmp))
    base = baseline_runs(collection, args.engine, rerank_top_n)
    result = report(collection, (args.collection or collection.name).lower(), args.engine, chosen, plat, base)
    result["run_s"] = round(time.perf_counter() - began, 1)
    text = table(result) + f"\nrun time {result['run_s']:.0f}s"
    if args.json:
        log(text)
        print(json.dumps(result))
    else:
        print(text)


if __name__ == "__main__":
    main()
