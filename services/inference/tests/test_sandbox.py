"""The plugin sandbox against hostile plugin code, on this machine's real kernel.

Each attack runs as its own one-row frame in one warm sandboxed worker, as a plugin's processor
would run it. Refused attacks fail their row with ``sandbox_violation``; attacks that can only
come back empty (the environment, the process list) are checked by what they found. The worker
outlives every one of them.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from inference_twins import TOY_MANIFEST, TOY_PIPELINE, frame, toy_archive

from featurebus.common.events import ReasonCode
from featurebus.common.frames import from_parquet, to_parquet
from featurebus.inference.sandbox import supervisor
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker

pytestmark = pytest.mark.integration  # real processes, namespaces and a loopback listener

SECRET = "fb-secret-7c1e0d"
OWN_BLOB = "s3://fb/ns_a/own.txt"
QUERY_BLOB = "s3://fb/queries/org_a/ns_a/q1"

HOSTILE = """
import asyncio, ctypes, json, os, socket, subprocess, tempfile, time
from shared.plugins import open_asset

def _connect(port):
    s = socket.socket()
    s.settimeout(2)
    s.connect(("127.0.0.1", int(port)))

ATTACKS = {
    "benign": lambda arg: "",
    "env": lambda arg: json.dumps(dict(os.environ)),
    "pids": lambda arg: json.dumps(sorted(int(p) for p in os.listdir("/proc") if p.isdigit())),
    "whoami": lambda arg: json.dumps([os.getuid(), open("/proc/self/status").read().split("CapEff:")[1].split()[0]]),
    "read_file": lambda arg: open(arg).read(),
    "list_dir": lambda arg: json.dumps(os.listdir(arg)),
    "write_outside": lambda arg: open(arg, "w").write("pwned"),
    "write_scratch": lambda arg: open(os.path.join(tempfile.gettempdir(), "ok.txt"), "w").write("fine") and "",
    "scratch_is_wiped": lambda arg: json.dumps(os.listdir(tempfile.gettempdir())),
    "connect": lambda arg: _connect(arg),
    "connect_errno": lambda arg: _connect_errno(arg),
    "metadata": lambda arg: socket.create_connection(("169.254.169.254", 80), timeout=2),
    "subprocess": lambda arg: subprocess.run(["/bin/true"]),
    "fork": lambda arg: os.fork(),
    "asyncio_spawn": lambda arg: asyncio.run(asyncio.create_subprocess_exec("/bin/true")),
    "raw_fork_exec": lambda arg: _raw_fork_exec(),
    "ctypes_libc": lambda arg: ctypes.CDLL("libc.so.6"),
    "native_from_scratch": lambda arg: (open("/tmp/evil.so", "wb").write(open(ctypes.__file__.replace("__init__.py", "../lib-dynload/_json.cpython-311-x86_64-linux-gnu.so"), "rb").read()), ctypes.CDLL("/tmp/evil.so")),
    "memory": lambda arg: bytearray(8 * 1024**3),
    "cpu": lambda arg: _spin(),
    "asset": lambda arg: _read(arg),
    "swallowed": lambda arg: _swallow(arg),
}

def _raw_fork_exec():
    # Below subprocess and its audit event: only the kernel's filter can refuse this.
    import _posixsubprocess
    r, w = os.pipe()
    _posixsubprocess.fork_exec(
        [b"/bin/true"], [b"/bin/true"], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w, False, False,
        -1, None, None, None, -1, None, False)

def _connect_errno(address):
    host, port = address.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
    except OSError as exc:
        return str(exc.errno)
    return "connected"

def _spin():
    while True:
        pass

def _read(uri):
    with open_asset(uri) as path:
        return open(path).read()

def _swallow(path):
    try:
        open(path).read()
    except Exception:
        pass
    return ""

class Hostile:
    def __init__(self, config):
        pass

    def __call__(self, batch):
        attack, arg = batch["blob_property"].iloc[0], batch["blob_id"].iloc[0]
        if attack == "query":  # a retriever's blob query: the vector is the length of its bytes
            batch["vec"] = [[float(len(_read(batch["data"].iloc[0]))), 1.0]] * len(batch)
            return batch
        found = ATTACKS[attack](arg)
        batch["vec"] = [[1.0, 0.0]] * len(batch)
        batch["found"] = [str(found) if isinstance(found, str) else ""] * len(batch)
        return batch
"""
PIPELINE = TOY_PIPELINE.replace("class Length:", HOSTILE + "\nclass Length:").replace(
    "StepDefinition(service_class=Length)", "StepDefinition(service_class=Hostile)"
)


@pytest.fixture(scope="module")
def platform_port() -> Iterator[tuple[int, list[bytes]]]:
    """A listener on loopback standing in for a platform server; what reaches it is recorded."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            received.append(conn.recv(100) or b"<connected>")
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1], received
    server.close()


@pytest.fixture(scope="module")
def secrets_on_disk() -> Iterator[Path]:
    """A service data directory with a key file, outside /tmp (which is the plugin's scratch)."""
    data = Path(tempfile.mkdtemp(prefix="fb-sandbox-test-", dir="/var/tmp"))
    (data / "admin-api-key").write_text(SECRET)
    (data / "admin-api-key").chmod(0o600)
    yield data
    shutil.rmtree(data)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, secrets_on_disk: Path) -> Iterator[SandboxedWorker]:
    os.environ["FEATUREBUS_S3_SECRET_KEY"] = SECRET  # what the actor process holds
    blobs = {OWN_BLOB: b"own blob", "s3://fb/ns_b/other.txt": SECRET.encode(), QUERY_BLOB: b"query image"}
    original = supervisor.fetch_asset_bytes
    supervisor.fetch_asset_bytes = blobs.__getitem__  # type: ignore[assignment]
    work = tmp_path_factory.mktemp("work")
    config = SandboxConfig(memory_bytes=2 * 1024**3, frame_cpu_seconds=3, forbidden=(str(secrets_on_disk),))
    w = SandboxedWorker("toy_1_0_0", toy_archive(PIPELINE, TOY_MANIFEST), None, str(work), None, config)
    assert w.load_error is None, w.load_error
    yield w
    supervisor.fetch_asset_bytes = original  # type: ignore[assignment]
    os.environ.pop("FEATUREBUS_S3_SECRET_KEY", None)
    w.close()


def run(worker: SandboxedWorker, text: str) -> tuple[ReasonCode | None, str, str]:
    """(failure reason or None, what the plugin found, the failure message) for the one-row frame
    ``"<attack> <argument>"``: the attack is the row's blob property, the argument its data."""
    attack, _, arg = text.partition(" ")
    rows = from_parquet(frame([OWN_BLOB]))  # every row's own blob, as the dispatcher would give it
    rows["blob_property"], rows["blob_id"] = attack, arg
    output = worker.process(to_parquet(rows))
    if output.failures:
        return output.failures[0].reason, "", output.failures[0].message
    assert output.vectors_parquet is not None
    return None, json.loads(from_parquet(output.vectors_parquet)["payload"][0]).get("found", ""), ""


def test_the_sandbox_runs_a_plugin_warm_and_is_not_root(worker: SandboxedWorker) -> None:
    assert run(worker, "benign") == (None, "", "")
    reason, found, _ = run(worker, "whoami")
    uid, capabilities = json.loads(found)
    assert reason is None and uid == 65534 and int(capabilities, 16) == 0


def test_no_credential_is_in_the_plugins_environment(worker: SandboxedWorker) -> None:
    reason, found, _ = run(worker, "env")
    environment = json.loads(found)
    assert reason is None
    assert SECRET not in found and not [k for k in environment if k.startswith(("FEATUREBUS_", "RAY_"))]


def test_the_plugin_sees_no_other_process(worker: SandboxedWorker) -> None:
    reason, found, _ = run(worker, "pids")
    assert reason is None and len(json.loads(found)) <= 3 and os.getpid() not in json.loads(found)


@pytest.mark.parametrize(
    "attack",
    [
        "read_file {secrets}/admin-api-key",
        "list_dir {secrets}",
        "read_file /etc/shadow",
        "write_outside {plugin_dir}/pipeline.py",
        "write_outside /usr/evil",
        "connect {port}",
        "metadata",
        "subprocess",
        "fork",
        "asyncio_spawn",
        "raw_fork_exec",
        "ctypes_libc",
        "native_from_scratch",
        "memory",
        "asset s3://fb/ns_b/other.txt",
        "swallowed {secrets}/admin-api-key",
    ],
)
def test_each_attack_fails_its_row_as_a_sandbox_violation(
    worker: SandboxedWorker, secrets_on_disk: Path, platform_port: tuple[int, list[bytes]], attack: str
) -> None:
    text = attack.format(secrets=secrets_on_disk, plugin_dir=worker.plugin_dir, port=platform_port[0])
    reason, found, message = run(worker, text)
    assert reason is ReasonCode.SANDBOX_VIOLATION, (reason, found, message)
    assert (SECRET not in message and "refused" in message) or "memory" in message
    assert platform_port[1] == []  # nothing reached the platform's port
    assert run(worker, "benign")[0] is None  # the worker lives on, warm
    assert worker.stats()["model_loads"] == 1


def test_a_plugin_reads_the_blobs_of_its_own_rows(worker: SandboxedWorker) -> None:
    assert run(worker, f"asset {OWN_BLOB}") == (None, "own blob", "")


def test_a_blob_query_reads_its_blob_while_it_is_embedded_and_not_after(worker: SandboxedWorker) -> None:
    query = {"data": QUERY_BLOB, "mime_type": "image/png", "blob_type": "image", "size_bytes": 11}
    assert worker.embed([query]) == [{"vec": [11.0, 1.0]}]
    reason, _, message = run(worker, f"asset {QUERY_BLOB}")  # a later frame was not given that blob
    assert reason is ReasonCode.SANDBOX_VIOLATION and "refused" in message


def test_scratch_is_writable_and_emptied_after_every_frame(worker: SandboxedWorker) -> None:
    assert run(worker, "write_scratch")[0] is None
    reason, found, _ = run(worker, "scratch_is_wiped")
    assert reason is None and "ok.txt" not in json.loads(found)


def test_a_frame_over_its_cpu_budget_is_stopped_and_the_plugin_restarted(worker: SandboxedWorker) -> None:
    restarts = worker.stats()["sandbox_restarts"]
    reason, _, message = run(worker, "cpu")
    assert reason is ReasonCode.SANDBOX_VIOLATION and "CPU time" in message
    assert run(worker, "benign")[0] is None
    assert worker.stats()["sandbox_restarts"] == restarts + 1


@pytest.fixture(scope="module")
def egress_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxedWorker]:
    """An API plugin's sandbox with the host's network, allowed TCP port 443 only."""
    config = SandboxConfig(memory_bytes=2 * 1024**3, frame_cpu_seconds=3, egress=True, egress_ports=(443,))
    work = tmp_path_factory.mktemp("egress")
    w = SandboxedWorker("toy_1_0_0", toy_archive(PIPELINE, TOY_MANIFEST), None, str(work), None, config)
    assert w.load_error is None, w.load_error
    yield w
    w.close()


def test_an_egress_plugin_reaches_only_the_allowed_ports_enforced_by_the_kernel(
    egress_worker: SandboxedWorker, platform_port: tuple[int, list[bytes]]
) -> None:
    # A public address passes the audit hook; the kernel (Landlock) still refuses any port but 443.
    assert run(egress_worker, "connect_errno 1.1.1.1:27017") == (None, str(errno.EACCES), "")
    reason, found, _ = run(egress_worker, "connect_errno 1.1.1.1:443")
    assert reason is None and found != str(errno.EACCES)  # unreachable or timed out, but not refused
    reason, _, message = run(egress_worker, f"connect {platform_port[0]}")  # loopback: the hook refuses it
    assert reason is ReasonCode.SANDBOX_VIOLATION and "refused" in message
    assert platform_port[1] == []


def test_without_landlock_only_plugins_without_egress_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurebus.inference.sandbox import child, landlock

    def unavailable(ports: list[int]) -> None:
        raise landlock.LandlockUnavailable("this kernel has ABI 3")

    monkeypatch.setattr(landlock, "restrict_tcp", unavailable)
    assert child._restrict_network([]) is None  # the loopback-only namespace still isolates it
    refused = child._restrict_network([443])
    assert refused.reason is ReasonCode.PLUGIN_LOAD_FAILED and "ABI 3" in refused.message and refused.hint
