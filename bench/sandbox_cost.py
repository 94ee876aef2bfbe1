"""The plugin sandbox's cost: the example plugin (all-MiniLM-L6-v2) sandboxed against the same
plugin loaded in the calling process, on the same frames and queries, in the same run.

    .venv/bin/python bench/sandbox_cost.py [--texts 10000] [--queries 200]

The texts go in frames of 64 (the example's batch_size), as a batch of that many texts reaches
the actors; queries are one text each. Both workers are
warm before timing (model loaded, first call done); the two are timed in alternating rounds so
that machine noise falls on both. Prints medians and the sandboxed / in-process ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from featurebus.common.frames import FRAME_COLUMNS, to_parquet
from featurebus.inference.plugin_worker import PluginWorker
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.scan import zip_directory
from featurebus.sdk.model_loading import offline_env, seed_offline_models

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "text_embed"


def frame(n: int, salt: int) -> bytes:
    rows = []
    for i in range(n):
        row: dict[str, object] = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=f"sentence {salt}-{i} about plugins, vectors and search", blob_type="text", size_bytes=0)
        row["mime_type"] = "text/plain"
        rows.append(row)
    return to_parquet(pd.DataFrame(rows))


def timed(call: Any, *args: Any) -> float:
    started = time.perf_counter()
    call(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    sizes = [min(64, args.texts - start) for start in range(0, args.texts, 64)]
    work = Path(tempfile.mkdtemp(prefix="fb-bench-sandbox-"))
    seed_offline_models(work / "models")
    os.environ.update(offline_env(work / "models"))
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    data = zip_directory(EXAMPLE)
    config = SandboxConfig(memory_bytes=6 * 1024**3)
    started = time.perf_counter()
    sandboxed = SandboxedWorker("text_embed_1_0_0", data, None, str(work / "a"), None, config)
    sandbox_start = time.perf_counter() - started
    started = time.perf_counter()
    plain = PluginWorker.from_archive("text_embed_1_0_0", data, None, str(work / "b"))
    plain_start = time.perf_counter() - started
    for worker in (sandboxed, plain):  # warm: the model loads on the first call
        worker.process(frame(64, -1))
        worker.embed(["warm up"])
    times: dict[str, list[float]] = {"sandboxed frame": [], "plain frame": [], "sandboxed query": [], "plain query": []}
    workers = {"sandboxed": sandboxed, "plain": plain}
    rounds = [("frame", "process", frame(size, i)) for i, size in enumerate(sizes)]
    rounds += [("query", "embed", [f"query number {i}"]) for i in range(args.queries)]
    for i, (kind, method, arg) in enumerate(rounds):
        for name in sorted(workers, reverse=i % 2 == 1):  # neither always goes first
            times[f"{name} {kind}"].append(timed(getattr(workers[name], method), arg))
    sandboxed.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    total = {k: sum(v) for k, v in times.items()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.texts} texts in {len(sizes)} frames")
    print(
        f"{args.texts} texts: sandboxed {total['sandboxed frame']:.1f} s, in-process {total['plain frame']:.1f} s, "
        f"ratio {total['sandboxed frame'] / total['plain frame']:.3f}"
    )
    print(f"start + load: sandboxed {sandbox_start:.2f}s, in-process {plain_start:.2f}s (model loads on first call)")
    print(
        f"frame of 64: sandboxed {med['sandboxed frame'] * 1000:.1f} ms, in-process {med['plain frame'] * 1000:.1f} ms"
    )
    print(f"  ratio {med['sandboxed frame'] / med['plain frame']:.3f}")
    print(f"query: sandboxed {med['sandboxed query'] * 1000:.2f} ms, in-process {med['plain query'] * 1000:.2f} ms")
    print(f"  ratio {med['sandboxed query'] / med['plain query']:.3f}")


if __name__ == "__main__":
    main()
