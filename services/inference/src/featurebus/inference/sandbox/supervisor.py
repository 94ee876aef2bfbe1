"""The trusted half of the sandbox: a PluginWorker look-alike whose plugin runs in a confined child.

Runs in the Ray actor process, which holds the object-store settings; the child holds nothing.
The child is started once and kept warm (the plugin and its model load once); a child that dies
or overruns its CPU budget fails the frame it was running and is started again for the next one.
"""

from __future__ import annotations

import array
import contextlib
import io
import itertools
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.common.frames import from_parquet, to_parquet
from featurebus.inference.access_supply import PluginAccess
from featurebus.inference.plugin_access import LLMGateway
from featurebus.inference.plugin_worker import Embedded, WorkerOutput, all_rows_failed, prepare_plugin
from featurebus.inference.sandbox.channel import Channel, ChannelClosed, Message, RemoteError
from featurebus.inference.sandbox.policy import SCRATCH, SandboxPolicy, SandboxUnavailable, python_roots
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query, blob_uris
from featurebus.sdk.assets import fetch_asset_bytes
from featurebus.sdk.container import LLMError

__all__ = ["SandboxConfig", "SandboxedWorker"]

log = logging.getLogger("featurebus.inference.sandbox")

_CHILD = [sys.executable, "-I", "-X", "faulthandler", "-m", "featurebus.inference.sandbox.child"]
_START_TIMEOUT_S = 60.0
# Thread and math settings of the actor, handed on to the child (nothing else of its environment).
_PASSED_ENV = (
    "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
    "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
    "SENTENCE_TRANSFORMERS_HOME", "HF_HUB_CACHE", "TORCH_HOME", "LANG", "LC_ALL", "TZ",
)  # fmt: skip


@dataclass(frozen=True)
class SandboxConfig:
    """The operator's sandbox settings and this plugin's limits, as the actor receives them."""

    memory_bytes: int = 4 * 1024**3
    frame_cpu_seconds: float = 300.0
    scratch_bytes: int = 1024**3
    egress: bool = False
    egress_ports: tuple[int, ...] = (443, 80)  # the TCP ports an egress plugin may connect to
    forbidden: tuple[str, ...] = ()
    # This plugin's namespace's models on the node (read-only inside; load_namespace_model).
    namespace_models: str | None = None
    # The plugin's own environment on the node (plugin_envs): read-only inside, first on sys.path.
    site_dirs: tuple[str, ...] = ()


class SandboxedWorker:
    """Same calls as :class:`~featurebus.inference.plugin_worker.PluginWorker`; the plugin runs sandboxed."""

    def __init__(
        self,
        plugin_id: str,
        archive: bytes,
        parameters: dict[str, Any] | None,
        work_dir: str,
        models_dir: str | None,
        config: SandboxConfig,
        realtime: bool = False,
        access: PluginAccess | None = None,
    ) -> None:
        """``realtime``: the child loads ``realtime.py`` (for :meth:`infer` and :meth:`embed`), not the steps.

        ``access``: the secrets granted to the plugin (handed to the child, and redacted from
        everything that comes out of it) and the operator's LLM, which the child's
        ``container.llm`` reaches through this process (the provider's key never enters the sandbox).
        """
        self.plugin_id = plugin_id
        self.parameters = dict(parameters or {})
        self.config = config
        self.realtime = realtime
        self.access = access or PluginAccess("", plugin_id)
        self._gateway = LLMGateway(self.access.llm, fetch=self._frame_blob) if self.access.llm else None
        # The model cache (read-only inside): the one given, else the worker's Hugging Face home.
        cache = models_dir or os.environ.get("HF_HOME")
        self.models_dir = Path(cache) if cache else None
        self.frames = self.queries = self.starts = self.violations = 0
        self.load_seconds = 0.0
        self.load_error: PluginError | None = None
        self._lock = threading.Lock()  # starting / replacing the child
        self._child: _Child | None = None
        self._allowed: Counter[str] = Counter()  # blob URIs of the frames in flight
        prepared = prepare_plugin(plugin_id, archive, work_dir, models_dir)
        if isinstance(prepared, PluginError):
            self.load_error = prepared
            return
        self.plugin_dir = prepared
        self.scratch_mount = prepared.parent / "scratch"
        self.scratch_mount.mkdir(mode=0o700, exist_ok=True)
        self._ensure_child()

    # --------------------------------------------------------------------------- the worker API

    def process(self, frame_parquet: bytes) -> WorkerOutput:
        """Run one frame in the child; every row embedded or failed, whatever the child does."""
        frame = from_parquet(frame_parquet)
        self.frames += 1
        failed = self._unusable(frame)
        if failed is not None:
            return failed
        uris = [d for d in frame["data"].astype(str) if d.startswith("s3://")]
        with self._lock:
            self._allowed.update(uris)
        try:
            child = self._ensure_child()
            if child is None:
                return self._failed_load(frame)
            try:
                reply = child.call_with_cpu_budget("process", {}, frame_parquet, self.config.frame_cpu_seconds)
            except _ChildGone as gone:
                self._drop(child)
                if gone.reason is ReasonCode.SANDBOX_VIOLATION:
                    self.violations += 1
                return WorkerOutput(None, all_rows_failed(frame, gone.reason, gone.message, gone.hint), len(frame), 0)
            return self._checked(frame, reply)
        finally:
            with self._lock:
                self._allowed.subtract(uris)
                self._allowed += Counter()  # drop the zero counts

    def embed(self, queries: list[Query]) -> list[Embedded]:
        """Each query's vectors (one call into the child for all); PluginError for a query the
        plugin failed, raised when none could be embedded (not loaded, the child died, a refusal).
        The child may read the blobs of blob queries while it embeds them, as a frame's."""
        self.queries += len(queries)
        uris = blob_uris(queries)
        with self._lock:
            self._allowed.update(uris)
        try:
            reply = self._query("embed", {"texts": queries})
        finally:
            with self._lock:
                self._allowed.subtract(uris)
                self._allowed += Counter()  # drop the zero counts
        results = reply.header.get("results")
        if not isinstance(results, list) or len(results) != len(queries):
            raise PluginError(ReasonCode.PLUGIN_EXCEPTION, "the plugin's sandbox answered the queries without vectors")
        return [self._redacted(answer) for answer in _embedded(results, reply.body)]

    def infer(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        """``realtime.py``'s answer to one request (a real-time worker only); PluginError on failure."""
        self.queries += 1
        answer = self._query("infer", {"inputs": inputs, "parameters": parameters}).header.get("answer")
        if not isinstance(answer, dict):
            raise PluginError(ReasonCode.PLUGIN_EXCEPTION, "the plugin's sandbox answered without a result")
        return answer

    def _query(self, op: str, header: dict[str, Any]) -> Message:
        if self.load_error is not None:
            raise self.load_error
        child = self._ensure_child()
        if child is None:
            raise self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "the plugin did not load")
        try:
            return child.call_with_cpu_budget(op, header, b"", self.config.frame_cpu_seconds)
        except _ChildGone as gone:
            self._drop(child)
            raise PluginError(gone.reason, gone.message, gone.hint) from None
        except RemoteError as err:
            raise self._redacted(
                PluginError(ReasonCode(err.extra.get("reason", "plugin_exception")), err.detail, err.extra.get("hint"))
            ) from None

    def stats(self) -> dict[str, Any]:
        """This worker's counts and its child's (model loads, frames, queries)."""
        child_stats: dict[str, Any] = {}
        child = self._child
        if child is not None and child.alive():
            try:
                child_stats = dict(child.channel.call("stats", timeout=30).header.get("stats") or {})
            except (ChannelClosed, RemoteError, TimeoutError):
                child_stats = {}
        return {
            "plugin_id": self.plugin_id,
            "model_loads": int(child_stats.get("model_loads", 0)),
            "frames": self.frames,
            "queries": self.queries,
            "load_seconds": self.load_seconds,
            "load_error": self.load_error.message if self.load_error else None,
            "pid": os.getpid(),
            "sandbox_pid": child.pid if child is not None else None,
            "sandbox_restarts": max(0, self.starts - 1),
            "sandbox_violations": self.violations,
            "plugin_dir": str(getattr(self, "plugin_dir", "")) or None,
        }

    def close(self) -> None:
        """Stop the sandboxed process (the actor is going away)."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            child.kill()

    # ------------------------------------------------------------------------------- the child

    def _ensure_child(self) -> _Child | None:
        with self._lock:
            if self._child is not None and self._child.alive():
                return self._child
            if self.load_error is not None:
                return None
            self.starts += 1
            policy = SandboxPolicy(
                plugin_dir=self.plugin_dir,
                scratch_mount=self.scratch_mount,
                models_dir=self.models_dir,
                namespace_models_dir=Path(self.config.namespace_models) if self.config.namespace_models else None,
                memory_bytes=self.config.memory_bytes,
                scratch_bytes=self.config.scratch_bytes,
                frame_cpu_seconds=self.config.frame_cpu_seconds,
                egress=self.config.egress,
                env={k: os.environ[k] for k in _PASSED_ENV if k in os.environ},
                python=[*python_roots(), *map(Path, self.config.site_dirs)],
                forbidden=tuple(Path(p) for p in self.config.forbidden),
            )
            started = time.perf_counter()
            try:
                child = _Child.start(policy, self._answer, self.plugin_id, self.access.redact)
                reply = child.hello(self._hello(policy), _START_TIMEOUT_S)
            except (SandboxUnavailable, _ChildGone, OSError) as exc:
                self.load_error = PluginError(
                    ReasonCode.PLUGIN_LOAD_FAILED, f"the plugin's sandbox did not start: {exc}"
                )
                return None
            self.load_seconds = time.perf_counter() - started
            error = reply.header.get("load_error")
            if isinstance(error, dict):
                self.load_error = self._redacted(
                    PluginError(
                        ReasonCode(error.get("reason", "plugin_load_failed")),
                        str(error.get("message")),
                        error.get("hint"),
                    )
                )
            self._child = child
            return child

    def _hello(self, policy: SandboxPolicy) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "plugin_dir": str(self.plugin_dir),
            "site_dirs": list(self.config.site_dirs),
            "parameters": self.parameters,
            "realtime": self.realtime,
            "namespace_id": self.access.namespace_id,
            "secrets": {} if self.realtime else self.access.secrets,
            "llm": self._gateway is not None,
            "readable": policy.readable(),
            "native_roots": [*map(str, policy.python), "/usr/lib", "/usr/lib64", "/usr/local/lib"],
            "forbidden": [str(Path(p).resolve()) for p in self.config.forbidden],
            "scratch": SCRATCH,
            "egress": policy.egress,
            "tcp_connect_ports": list(self.config.egress_ports) if policy.egress else [],
            "memory_bytes": policy.memory_bytes,
            "max_open_files": policy.max_open_files,
            "max_file_bytes": policy.max_file_bytes,
        }

    def _drop(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            if self._child is child:
                self._child = None

    def _answer(self, message: Message) -> Message:
        """The child's calls: ``asset``, only for blobs of the frames it is running, and ``llm``."""
        op = message.header.get("op")
        if op == "llm" and self._gateway is not None:
            try:
                return Message({"result": self._gateway.call(message.header.get("request") or {})})
            except LLMError as err:
                raise RemoteError("llm_error", self.access.redact(err.message), {"hint": err.hint}) from None
        if op != "asset":
            raise RemoteError("unsupported", "the sandbox answers only asset and llm requests")
        uri = str(message.header.get("uri", ""))
        try:
            return Message({}, self._frame_blob(uri))
        except PermissionError as refused:
            self.violations += 1
            raise RemoteError(
                "refused", str(refused), {"hint": "open the URLs in batch['data'] of the frame being processed"}
            ) from None

    def _frame_blob(self, uri: str) -> bytes:
        """A blob of a frame in flight (an asset, an image sent to the LLM); PermissionError for any other."""
        with self._lock:
            allowed = self._allowed[uri] > 0
        if not allowed:
            raise PermissionError(
                f"reading the blob {uri!r} was refused: a plugin may read only the blobs of the rows it was given"
            )
        return fetch_asset_bytes(uri)

    # ------------------------------------------------------------------------------ the results

    def _unusable(self, frame: Any) -> WorkerOutput | None:
        if self.load_error is None:
            return None
        return self._failed_load(frame)

    def _failed_load(self, frame: Any) -> WorkerOutput:
        err = self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"plugin {self.plugin_id} is not loaded")
        return WorkerOutput(None, all_rows_failed(frame, err.reason, err.message, err.hint), len(frame), 0, True)

    def _checked(self, frame: Any, reply: Message) -> WorkerOutput:
        """The child's answer, believed only as far as it is about the rows it was given."""
        ids = set(frame["document_id"].astype(str))
        try:
            failures = [RowFailure.model_validate(f) for f in reply.header.get("failures", [])]
            embedded: list[str] = []
            if reply.body:
                embedded = [
                    str(d) for d in pq.read_table(io.BytesIO(reply.body), columns=["document_id"]).column(0).to_pylist()
                ]
            failed = [f.document_id for f in failures]
            answered = embedded + failed
            if len(answered) != len(ids) or set(answered) != ids:
                raise ValueError("its vectors and failures do not account for exactly the frame's rows")
        except Exception as exc:
            self.violations += 1
            message = f"the plugin's sandbox returned an unusable result: {exc}"
            return WorkerOutput(None, all_rows_failed(frame, ReasonCode.SANDBOX_VIOLATION, message), len(frame), 0)
        if any(f.reason is ReasonCode.SANDBOX_VIOLATION for f in failures):
            self.violations += 1
        load_failed = bool(reply.header.get("load_failed"))
        output = WorkerOutput(reply.body or None, failures, len(frame), len(embedded), load_failed)
        return self._without_secrets(frame, output)

    # ------------------------------------------------------------------------------ the secrets

    def _redacted(self, value: Any) -> Any:
        """A PluginError (or a query's vectors, as they are) with the plugin's secrets blanked out."""
        if isinstance(value, PluginError) and self.access.hidden():
            hint = self.access.redact(value.hint) if value.hint else value.hint
            return PluginError(value.reason, self.access.redact(value.message), hint)
        return value

    def _without_secrets(self, frame: Any, output: WorkerOutput) -> WorkerOutput:
        """Row errors with the secrets blanked out; a row whose output carries a secret's value fails
        (its payload would hand the secret to anyone who can read the namespace)."""
        hidden = self.access.hidden()
        if not hidden:
            return output
        for failure in output.failures:
            failure.message = self.access.redact(failure.message)
            failure.hint = self.access.redact(failure.hint) if failure.hint else failure.hint
        if output.vectors_parquet is None:
            return output
        vectors = from_parquet(output.vectors_parquet)
        # The payload (JSON text) is the only text of the plugin's in a vector set: the ids come
        # from the frame and the vectors are numbers.
        leaking = [any(h in str(payload) for h in hidden) for payload in vectors["payload"]]
        if not any(leaking):
            return output
        self.violations += 1
        leaked_ids = set(vectors.loc[leaking, "document_id"].astype(str))
        kept = vectors[[not leak for leak in leaking]]
        output.failures += all_rows_failed(
            frame[frame["document_id"].astype(str).isin(leaked_ids)],
            ReasonCode.SANDBOX_VIOLATION,
            "the plugin wrote the value of a secret granted to it into its output; the row was not indexed",
            "keep secrets out of vectors and payload fields: use them only to call the services they are for",
        )
        output.rows_embedded = len(kept)
        output.vectors_parquet = to_parquet(kept) if len(kept) else None
        return output


class _ChildGone(Exception):
    def __init__(self, reason: ReasonCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.hint = reason, message, hint


def _embedded(results: list[Any], body: bytes) -> list[Embedded]:
    """Each query's answer from the child, checked: ``{"error": ...}``, or ``{"vectors": {feature:
    length}}`` with the vectors' float64s in ``body``, in that order. An answer whose lengths do not
    account for exactly the body's floats is unusable as a whole (PluginError)."""
    unusable = PluginError(ReasonCode.PLUGIN_EXCEPTION, "the plugin's sandbox answered the queries without vectors")
    if len(body) % 8:
        raise unusable
    floats = array.array("d", body)
    answers: list[Embedded] = []
    offset = 0
    for result in results:
        error = result.get("error") if isinstance(result, dict) else None
        if isinstance(error, dict):
            try:
                reason = ReasonCode(error.get("reason", "plugin_exception"))
            except ValueError:
                reason = ReasonCode.PLUGIN_EXCEPTION
            hint = error.get("hint")
            answers.append(PluginError(reason, str(error.get("message", "")), hint if isinstance(hint, str) else None))
            continue
        lengths = result.get("vectors") if isinstance(result, dict) else None
        if not isinstance(lengths, dict) or not all(type(n) is int and n >= 0 for n in lengths.values()):
            raise unusable
        vectors: dict[str, list[float]] = {}
        for name, length in lengths.items():
            vectors[str(name)] = floats[offset : offset + length].tolist()
            offset += length
        answers.append(vectors)
    if offset != len(floats):
        raise unusable
    return answers


class _Child:
    """One running sandbox process and its channel."""

    def __init__(self, process: subprocess.Popen[bytes], channel: Channel, pid: int, plugin_id: str) -> None:
        self.process, self.channel, self.pid, self.plugin_id = process, channel, pid, plugin_id
        self.killed_for: str | None = None
        self.redact: Callable[[str], str] = str
        # The calls in flight (a frame and a query may overlap): their budget, and the child's CPU
        # seconds when the watchdog first saw them (a call's first 0.25 s go uncounted; budgets
        # are minutes, and reading /proc on every call would cost a short query 0.1 ms).
        self._budgets: dict[int, tuple[float, float | None]] = {}
        self._budgets_lock = threading.Lock()
        self._calls = itertools.count()

    @classmethod
    def start(cls, policy: SandboxPolicy, handler: Any, plugin_id: str, redact: Callable[[str], str]) -> _Child:
        info_r, info_w = os.pipe()
        try:
            process = subprocess.Popen(
                policy.command(_CHILD, info_fd=info_w),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(info_w,),
                close_fds=True,
                start_new_session=True,
            )
        finally:
            os.close(info_w)
        pid = _read_child_pid(info_r, process)  # the sandbox's init: killing it ends everything inside
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        # Handler threads: the plugin's concurrent container.llm calls (concurrent_api_calls runs 10).
        channel = Channel(process.stdout, process.stdin, handler, handler_threads=16)
        child = cls(process, channel, pid, plugin_id)
        child.redact = redact
        threading.Thread(target=child._relay_stderr, name=f"sandbox-log-{plugin_id}", daemon=True).start()
        threading.Thread(target=child._watch_cpu, name=f"sandbox-cpu-{plugin_id}", daemon=True).start()
        return child

    def hello(self, config: dict[str, Any], timeout: float) -> Message:
        self.channel.start()
        try:
            return self.channel.call("hello", {"config": config}, timeout=timeout)
        except (ChannelClosed, TimeoutError) as exc:
            raise self._gone("while loading the plugin") from exc

    def alive(self) -> bool:
        return self.process.poll() is None and self.killed_for is None

    def call_with_cpu_budget(self, op: str, header: dict[str, Any], body: bytes, cpu_seconds: float) -> Message:
        """``op`` in the child; the child is killed if it spends more than ``cpu_seconds`` on it."""
        call = next(self._calls)
        with self._budgets_lock:
            self._budgets[call] = (cpu_seconds, None)
        try:
            return self.channel.call(op, header, body)
        except ChannelClosed as exc:
            raise self._gone(f"while running {'a frame' if op == 'process' else 'a query'}") from exc
        finally:
            with self._budgets_lock:
                del self._budgets[call]

    def kill(self) -> None:
        for pid in (self.pid, self.process.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)
        self.channel.close("the sandbox was stopped")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _watch_cpu(self) -> None:
        """One watchdog for the child's life (a thread per call cost more than a short query)."""
        while self.alive():
            time.sleep(0.25)
            with self._budgets_lock:
                if not self._budgets:
                    continue
            used = _cpu_seconds(self.pid)
            with self._budgets_lock:
                for call, (budget, start) in self._budgets.items():
                    if start is None:
                        self._budgets[call] = (budget, used)
                over = [
                    budget for budget, start in self._budgets.values() if start is not None and used - start > budget
                ]
            if over:
                self.killed_for = f"the plugin used more than {over[0]:g} s of CPU time on one call"
                self.kill()
                return

    def _gone(self, when: str) -> _ChildGone:
        if self.killed_for is not None:
            return _ChildGone(
                ReasonCode.SANDBOX_VIOLATION,
                f"{self.killed_for}: its sandbox was stopped {when}",
                "make the step faster or the batch smaller; the limit is FEATUREBUS_SANDBOX_FRAME_CPU_SECONDS",
            )
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.wait(timeout=10)
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return _ChildGone(
            ReasonCode.PLUGIN_EXCEPTION,
            f"the plugin's sandboxed process {how} {when}; it is started again for the next frame",
            "a crash in native code, or the machine ran out of memory; the plugin's stderr is in the inference log",
        )

    def _relay_stderr(self) -> None:
        """The plugin's prints and logs, into the worker's log (a line at a time, cut at 2,000 chars)."""
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                log.info("plugin %s: %s", self.plugin_id, self.redact(line)[:2000])


def _read_child_pid(info_r: int, process: subprocess.Popen[bytes]) -> int:
    """bubblewrap's ``child-pid`` (as this host sees it), from its info fd."""
    data = b""
    deadline = time.monotonic() + _START_TIMEOUT_S
    with os.fdopen(info_r, "rb", buffering=0) as info:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([info], [], [], 0.5)
            if ready:
                chunk = info.read(4096)
                if not chunk:
                    break
                data += chunk
                try:
                    return int(json.loads(data)["child-pid"])
                except (ValueError, KeyError):
                    continue
            elif process.poll() is not None:
                break
    err = (
        process.stderr.read().decode("utf-8", "replace").strip()
        if process.stderr and process.poll() is not None
        else ""
    )
    process.kill()
    raise SandboxUnavailable(f"bubblewrap did not start the sandbox{': ' + err[-2000:] if err else ''}")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants (the sandbox's init and the plugin
    process under it); 0 when they are gone."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(int(c) for c in children)
    return total
