"""A multi-node Ray cluster on this machine, for tests: a head and more nodes, each its own ``ray start``.

Every node runs ``ray start ... --block`` as a background process of this test (pid files and logs
under the given directory, as deploy/local does for the stack), listens on 127.0.0.1 only, on
ports picked free (none of Ray's fixed defaults, so that other Ray instances on the machine do not
collide), and keeps its session files under a short directory of its own in /tmp. Stopping ends
exactly the processes these nodes started, by PID.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from stack import free_port, start_process

__all__ = ["RayCluster"]

JOIN = Path(__file__).resolve().parent / "_ray_join.py"
# No token file in ~/.ray; no usage report; Ray's agents on loopback (see _ray_join.py).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@dataclass
class RayCluster:
    data_dir: Path
    nodes: int = 2
    cpus_per_node: int = 1
    port: int = field(default_factory=free_port)
    # Ray's socket paths must stay under 108 characters: not under pytest's long tmp paths.
    temp_dir: str = field(default_factory=lambda: f"/tmp/fb-rc-{secrets.token_hex(4)}")
    # Each node's `ray start`, as started (psutil checks a PID still names that process).
    _roots: dict[str, psutil.Process] = field(default_factory=dict, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def names(self) -> list[str]:
        return ["ray-head", *(f"ray-node{i}" for i in range(1, self.nodes))]

    def start(self, timeout: float = 120.0, attempts: int = 2) -> None:
        """Start the head, then each other node, each waited for until Ray says it runs.

        A node gives up when its raylet has not registered within 30 s (fixed in Ray), which a
        busy 2-core machine can exceed: then the whole cluster is stopped and started once more.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start_all(timeout)
                return
            except RuntimeError:
                self.stop()
                if attempt == attempts:
                    raise
                self.port, self.temp_dir = free_port(), f"/tmp/fb-rc-{secrets.token_hex(4)}"

    def _start_all(self, timeout: float) -> None:
        ray = str(Path(sys.executable).parent / "ray")
        head = [
            ray,
            "start",
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.temp_dir}",
        ]
        self._start_node("ray-head", head, timeout)
        for name in self.names[1:]:
            self._start_node(name, [sys.executable, str(JOIN), "start", f"--address={self.address}"], timeout)

    def _start_node(self, name: str, argv: list[str], timeout: float) -> None:
        common = [
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus_per_node}",
            "--disable-usage-stats",
            "--block",
            *(f"--{flag}={free_port()}" for flag in _PORT_FLAGS),
        ]
        log = self.data_dir / "logs" / f"{name}.log"
        seen = log.stat().st_size if log.exists() else 0  # the log is appended to across attempts
        self._roots[name] = psutil.Process(start_process(name, [*argv, *common], self.data_dir, RAY_ENV))
        deadline = time.monotonic() + timeout
        while True:
            with log.open("rb") as f:
                f.seek(seen)
                text = f.read().decode(errors="replace")
            if "Ray runtime started" in text:
                return
            if not _running(self._roots[name]) or time.monotonic() > deadline:
                raise RuntimeError(f"Ray node {name} did not start; last log lines:\n{text[-3000:]}")
            time.sleep(0.2)

    def processes(self) -> dict[str, list[psutil.Process]]:
        """Every process of each node: its ``ray start``, Ray's servers and agents, the workers."""
        found: dict[str, list[psutil.Process]] = {}
        for name, root in self._roots.items():
            try:
                found[name] = [root, *root.children(recursive=True)] if _running(root) else []
            except psutil.NoSuchProcess:
                found[name] = []
        return found

    def actors(self, class_name: str) -> dict[str, list[int]]:
        """PIDs of the worker processes running actors of ``class_name``, by node."""
        return {name: actor_pids(procs, class_name) for name, procs in self.processes().items()}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each node's processes, summed."""
        return {name: sum(_rss(p) for p in procs) for name, procs in self.processes().items()}

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL), then any worker its raylet left behind, by PID."""
        # Workers run in sessions of their own: ending a node's process group leaves them to notice
        # their raylet is gone, so they are listed first and ended too if they linger.
        leftovers = [p for procs in self.processes().values() for p in procs]
        for name in reversed(list(self._roots)):
            _stop_group(self._roots.pop(name), timeout=5)
            (self.data_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
        for proc in leftovers:
            try:
                if proc.is_running():  # the same process, not a reused PID (psutil compares start times)
                    proc.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


_PORT_FLAGS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)


def actor_pids(processes: list[psutil.Process], class_name: str) -> list[int]:
    """Of ``processes``, those Ray runs actors of ``class_name`` in (their title is ``ray::Class[.method]``)."""
    pids = []
    for proc in processes:
        try:
            title = (proc.cmdline() or [""])[0]  # Ray overwrites argv; NULs pad the rest
        except psutil.Error:
            continue
        if title == f"ray::{class_name}" or title.startswith(f"ray::{class_name}."):
            pids.append(proc.pid)
    return pids


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop_group(root: psutil.Process, timeout: float) -> None:
    """SIGTERM the process group ``root`` leads (start_process made it a session leader), SIGKILL after ``timeout``."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _running(root):
            return
        try:
            os.killpg(root.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _running(root) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(root.pid, os.WNOHANG)  # reap it if it is our child
            time.sleep(0.1)


def _rss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return 0
