"""Start and stop the five featurebus services as separate processes against the local stack.

    python deploy/local/services.py start [--data-dir .featurebus]
    python deploy/local/services.py stop

Each service runs as ``python -m featurebus.<name>`` with the stack's ``FEATUREBUS_*`` variables;
logs go to ``DIR/logs/<name>.log`` and pids to ``DIR/pids/svc-<name>.pid``. ``start`` returns once
the registry's ``/healthz`` answers 200 and the internal APIs of inference, the indexer and the
registry listen.
Stopping sends SIGTERM first, so that each service finishes the message in hand and commits its
Kafka offsets.

The internal APIs (inference's embed, the indexer's search: registry → them; the registry's
secrets API: inference → it, on a port of its own; all on 127.0.0.1) share
one service token per data dir: ``DIR/internal-token`` (mode 0600), generated on first start
unless ``FEATUREBUS_INTERNAL_TOKEN`` is set, and handed to every service.
"""

from __future__ import annotations

import functools
import os
import secrets
import sys
import time
from pathlib import Path

import httpx
import typer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import LocalStack, exit_status, free_port, running_pid, start_process, stop_process

from featurebus.common.settings import DEFAULT_INDEXER_PORT, DEFAULT_INFERENCE_PORT, DEFAULT_REGISTRY_INTERNAL_PORT

__all__ = ["METRICS_PORTS", "SERVICES", "TOKEN_FILE", "LocalServices", "internal_token"]

SERVICES = ("indexer", "dispatcher", "scanner", "inference", "registry")
TOKEN_FILE = "internal-token"
# The services that serve an internal API: (name, path that answers a GET with 405 once it listens).
INTERNAL_APIS = (
    ("inference", "/internal/v1/embed"),
    ("indexer", "/internal/v1/search"),
    ("registry", "/internal/v1/secrets"),
)
# The services without an HTTP server of their own serve /metrics on FEATUREBUS_METRICS_PORT; `make run`
# gives them these (the registry serves /metrics on its REST port, inference and the indexer on their
# internal API's port).
METRICS_PORTS = {"dispatcher": 8040, "scanner": 8050}
# The variable that sets the port of each service's internal API.
INTERNAL_PORT_VARS = {
    "inference": "FEATUREBUS_INFERENCE_PORT",
    "indexer": "FEATUREBUS_INDEXER_PORT",
    "registry": "FEATUREBUS_REGISTRY_INTERNAL_PORT",
}


def internal_token(data_dir: Path) -> str:
    """The installation's service token: ``DIR/internal-token`` (mode 0600), generated once."""
    path = Path(data_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another start made it first
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class LocalServices:
    """The five services of one featurebus installation, as background processes.

    ``inference_port`` / ``indexer_port`` / ``registry_internal_port`` are where the internal APIs
    listen (free ports when not given); the registry is told the first two URLs, every service the
    registry's (``FEATUREBUS_REGISTRY_INTERNAL_URL``: inference reads a plugin's granted secrets there).
    """

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str],
        http_port: int = 8000,
        inference_port: int | None = None,
        indexer_port: int | None = None,
        registry_internal_port: int | None = None,
        metrics_ports: dict[str, int] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        # Where the dispatcher and the scanner serve /metrics (free ports when not given).
        self.metrics_ports = metrics_ports or {name: free_port() for name in METRICS_PORTS}
        self.http_port = http_port
        self.inference_port = inference_port or free_port()
        self.indexer_port = indexer_port or free_port()
        self.registry_internal_port = registry_internal_port or free_port()
        self.env = {
            **env,
            "FEATUREBUS_HTTP_PORT": str(http_port),
            "FEATUREBUS_DATA_DIR": str(self.data_dir),
            "FEATUREBUS_INFERENCE_PORT": str(self.inference_port),
            "FEATUREBUS_INDEXER_PORT": str(self.indexer_port),
            "FEATUREBUS_INFERENCE_URL": self.inference_url,
            "FEATUREBUS_INDEXER_URL": self.indexer_url,
            "FEATUREBUS_REGISTRY_INTERNAL_PORT": str(self.registry_internal_port),
            "FEATUREBUS_REGISTRY_INTERNAL_URL": self.registry_internal_url,
        }

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.inference_port}"

    @property
    def indexer_url(self) -> str:
        return f"http://127.0.0.1:{self.indexer_port}"

    @property
    def registry_internal_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_internal_port}"

    def internal_url(self, name: str) -> str:
        """Where service ``name`` serves its internal API."""
        return {
            "inference": self.inference_url,
            "indexer": self.indexer_url,
            "registry": self.registry_internal_url,
        }[name]

    @functools.cached_property
    def token(self) -> str:
        """The service token every service gets (read or generated only when a service starts)."""
        return self.env.get("FEATUREBUS_INTERNAL_TOKEN") or internal_token(self.data_dir)

    def _env(self, **more: str) -> dict[str, str]:
        return {**self.env, "FEATUREBUS_INTERNAL_TOKEN": self.token, **more}

    def start(self, names: tuple[str, ...] = SERVICES, timeout: float = 240.0) -> None:
        for name in names:
            if running_pid(f"svc-{name}", self.data_dir) is None:
                self._spawn(name)
        if "registry" in names:
            self.wait_healthy(timeout)

    def _spawn(self, name: str) -> int:
        env = self._env(
            **({"FEATUREBUS_METRICS_PORT": str(self.metrics_ports[name])} if name in self.metrics_ports else {})
        )
        return start_process(f"svc-{name}", [sys.executable, "-m", f"featurebus.{name}"], self.data_dir, env)

    def start_replica(self, name: str) -> str:
        """Start one more process of service ``name`` (same consumer groups); returns its name, e.g. ``inference-2``.

        A replica gets a data directory of its own (its own Ray, caches and embedded state) and a
        port of its own for its internal API (the registry keeps calling the first process).
        """
        number = 2
        while running_pid(f"svc-{name}-{number}", self.data_dir) is not None:
            number += 1
        replica = f"{name}-{number}"
        env = self._env(FEATUREBUS_DATA_DIR=str(self.data_dir / "replicas" / replica))
        if name in INTERNAL_PORT_VARS:
            env[INTERNAL_PORT_VARS[name]] = str(free_port())
        if name in self.metrics_ports:
            env["FEATUREBUS_METRICS_PORT"] = str(free_port())
        start_process(f"svc-{replica}", [sys.executable, "-m", f"featurebus.{name}"], self.data_dir, env)
        return replica

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        # A process caught in the middle of exec has no command line yet: it counts as gone only
        # when two checks in a row miss it.
        missing: set[str] = set()
        while time.monotonic() < deadline:
            for name in SERVICES:
                if running_pid(f"svc-{name}", self.data_dir) is not None:
                    missing.discard(name)
                elif name not in missing:
                    missing.add(name)
                else:
                    raise RuntimeError(
                        f"service {name} is not running ({exit_status(f'svc-{name}', self.data_dir)}); "
                        f"last log lines:\n{self.log(name)[-3000:]}"
                    )
            try:
                response = httpx.get(f"{self.base_url}/healthz", timeout=2)
                last = response.text if response.status_code != 200 else self._internal_apis_down()
                if not last:
                    return
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise RuntimeError(f"services not ready after {timeout:.0f}s: {last}")

    def _internal_apis_down(self) -> str:
        """Which internal APIs do not listen yet ("" when all do)."""
        down = []
        for name, path in INTERNAL_APIS:
            url = f"{self.internal_url(name)}{path}"
            try:
                httpx.get(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=2)
            except httpx.HTTPError as exc:
                down.append(f"{name} internal API at {url}: {exc!r}")
        return "; ".join(down)

    def stop(self, names: tuple[str, ...] = SERVICES) -> list[str]:
        """Stop the services ``names`` and their replicas; returns the processes that were running."""
        # The registry first (no new work comes in), then the pipeline front to back.
        order = ("registry", "dispatcher", "scanner", "inference", "indexer")
        recorded = [p.stem.removeprefix("svc-") for p in (self.data_dir / "pids").glob("svc-*.pid")]
        chosen = sorted(
            (p for p in recorded if p.split("-")[0] in names), key=lambda p: (order.index(p.split("-")[0]), p)
        )
        return [p for p in chosen if stop_process(f"svc-{p}", self.data_dir, timeout=30)]

    def restart(self, name: str, hard: bool = False) -> None:
        """Stop one service process (SIGTERM; SIGKILL at once if ``hard``) and start it again."""
        stop_process(f"svc-{name}", self.data_dir, timeout=30, hard=hard)
        self._spawn(name)

    def kill(self, name: str) -> bool:
        """SIGKILL one service process (``inference``, ``inference-2``...) and its process group, as a crash would."""
        return stop_process(f"svc-{name}", self.data_dir, hard=True)

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"svc-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


cli = typer.Typer(help="The five featurebus services, against the local stack.")
DataDir = typer.Option(
    Path(os.environ.get("FEATUREBUS_DATA_DIR", ".featurebus")), help="where data, logs and pids live"
)


@cli.command()
def start(data_dir: Path = DataDir) -> None:
    """Start every service and wait until the registry is healthy."""
    began = time.monotonic()
    given = {**LocalStack(data_dir).env(), **_passthrough()}
    services = LocalServices(
        data_dir,
        given,
        inference_port=int(given.get("FEATUREBUS_INFERENCE_PORT", DEFAULT_INFERENCE_PORT)),
        indexer_port=int(given.get("FEATUREBUS_INDEXER_PORT", DEFAULT_INDEXER_PORT)),
        registry_internal_port=int(given.get("FEATUREBUS_REGISTRY_INTERNAL_PORT", DEFAULT_REGISTRY_INTERNAL_PORT)),
        metrics_ports=METRICS_PORTS,
    )
    services.start()
    typer.echo(f"services up in {time.monotonic() - began:.1f}s at {services.base_url}")


@cli.command()
def stop(data_dir: Path = DataDir) -> None:
    """Stop every service started from this data dir (SIGTERM, by recorded PID)."""
    stopped = LocalServices(
        data_dir,
        {},
        inference_port=DEFAULT_INFERENCE_PORT,
        indexer_port=DEFAULT_INDEXER_PORT,
        registry_internal_port=DEFAULT_REGISTRY_INTERNAL_PORT,
    ).stop()
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def _passthrough() -> dict[str, str]:
    """FEATUREBUS_* settings the operator exported override the local defaults."""
    return {k: v for k, v in os.environ.items() if k.startswith("FEATUREBUS_")}


if __name__ == "__main__":
    cli()
