"""The local stack and the services for the benches (:func:`local_platform`), and their
processes' CPU used and memory held."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["PeakRss", "Platform", "cpu_seconds", "local_platform", "process_roots"]


@dataclass(frozen=True)
class Platform:
    """A running platform: its REST URL, admin key, and the roots of its processes."""

    base_url: str
    key: str
    stack: Any  # deploy/local's LocalStack
    services: Any  # deploy/local's LocalServices

    def roots(self) -> dict[str, int]:
        return process_roots(self.stack.data_dir, self.services.data_dir)


@contextlib.contextmanager
def local_platform(data_dir: Path) -> Iterator[Platform]:
    """The local stack and the five services on free loopback ports, stopped (by PID) on the way
    out. The script puts deploy/local on sys.path first."""
    from stack import LocalStack, free_port

    from services import LocalServices

    stack = LocalStack(data_dir / "stack", kafka_port=free_port(), mongo_port=free_port(), s3_port=free_port())
    key = "fb_" + secrets.token_urlsafe(16)
    env = {**stack.env(), "FEATUREBUS_ADMIN_API_KEY": key, "FEATUREBUS_TOPIC_PREFIX": "bench."}
    services = LocalServices(data_dir / "svc", env, http_port=free_port())
    stack.start()
    try:
        services.start()
        yield Platform(services.base_url, key, stack, services)
    finally:
        services.stop()
        stack.stop()


def process_roots(*data_dirs: Path) -> dict[str, int]:
    """Name → pid of every process that deploy/local started under ``data_dirs`` (pid files)."""
    return {
        p.stem.removeprefix("svc-"): int(json.loads(p.read_text())["pid"])
        for d in data_dirs
        for p in (d / "pids").glob("*.pid")
    }


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and its live descendants."""
    used: dict[str, float] = {}
    for name, pid in roots.items():
        for proc in _tree(pid):
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            used[name] = used.get(name, 0.0) + times.user + times.system
    return used


class PeakRss:
    """Samples the summed RSS of the given root processes and all their descendants."""

    def __init__(self, roots: list[int]) -> None:
        self.roots, self.peak, self._stop = roots, 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self.roots:
                for proc in _tree(pid):
                    with contextlib.suppress(psutil.Error):
                        total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.5)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
