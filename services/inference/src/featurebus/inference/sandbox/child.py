"""The sandboxed plugin process: ``python -I -m featurebus.inference.sandbox.child``.

Started by :class:`~featurebus.inference.sandbox.supervisor.SandboxedWorker` inside bubblewrap.
Before any plugin code runs it reads its configuration, sets its resource limits, loads the
seccomp filter (before any thread starts, and with TSYNC) and the guard; then it loads the plugin
once and answers frames and queries over its stdin/stdout until the supervisor goes away.
"""

from __future__ import annotations

import array
import os
import resource
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from featurebus.inference.sandbox import seccomp_rules
from featurebus.inference.sandbox.channel import Channel, Message, RemoteError
from featurebus.inference.sandbox.guard import Guard

VIOLATION_HINT = "the plugin's sandbox refused it; see 'Plugin sandbox' in the README for what plugins may do"


def main() -> None:
    # The call channel keeps the original stdin/stdout; the plugin's prints and logs go to stderr.
    reader = os.fdopen(os.dup(0), "rb", buffering=0)
    writer = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # the plugin's prints reach the log as they are made
    channel = Channel(reader, writer)
    hello = channel.read_one()
    config: dict[str, Any] = hello.header["config"]
    _limit(config)
    refused = _restrict_network(config["tcp_connect_ports"])  # before any thread starts
    seccomp_rules.install()
    guard = Guard(
        readable=[os.path.realpath(p) for p in config["readable"]] + ["/lib", "/lib64", "/bin"],
        scratch=config["scratch"],
        plugin_dir=os.path.realpath(config["plugin_dir"]),
        native_roots=[os.path.realpath(p) for p in config["native_roots"]],
        egress=config["egress"],
        forbidden=list(config.get("forbidden", [])),
    )
    guard.install()
    server = _Server(channel, guard, config)
    channel.handler = server.answer
    channel.start()
    server.load(hello, refused)
    threading.Event().wait()  # serve until the supervisor closes the channel (we die with it)


def _restrict_network(connect_ports: list[int]) -> Any:
    """Landlock: TCP connections only to ``connect_ports``, no listening. Without Landlock's network
    rules the loopback-only namespace still isolates a plugin without egress; one with egress
    does not load (the PluginError saying why is returned)."""
    from featurebus.common.events import ReasonCode
    from featurebus.inference.sandbox import landlock
    from featurebus.runtime import PluginError

    try:
        landlock.restrict_tcp(connect_ports)
    except landlock.LandlockUnavailable as exc:
        if connect_ports:
            return PluginError(
                ReasonCode.PLUGIN_LOAD_FAILED,
                f"outbound network for API plugins is enforced by the kernel, and cannot be here: {exc}",
                "run inference on Linux 6.7+, or turn FEATUREBUS_SANDBOX_EGRESS off",
            )
    return None


def _limit(config: dict[str, Any]) -> None:
    """Address space, open files, file size, no core dumps; a too-large write fails with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for limit, value in (
        (resource.RLIMIT_AS, config["memory_bytes"]),
        (resource.RLIMIT_NOFILE, config["max_open_files"]),
        (resource.RLIMIT_FSIZE, config["max_file_bytes"]),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(limit, (value, value))


class _Server:
    def __init__(self, channel: Channel, guard: Guard, config: dict[str, Any]) -> None:
        self.channel, self.guard, self.config = channel, guard, config
        self.worker: Any = None
        self._busy = 0
        self._lock = threading.Lock()

    def load(self, hello: Message, refused: Any = None) -> None:
        """Load the plugin once, unless its sandbox could not be made (``refused``, a PluginError)."""
        from featurebus.inference.plugin_worker import PluginWorker, RealtimeWorker
        from featurebus.sdk.assets import use_s3_fetcher

        error, seconds = refused, 0.0
        if error is None:
            sys.path[:0] = self.config.get("site_dirs") or []  # the plugin's own environment first
            use_s3_fetcher(self._fetch)
            plugin_dir = Path(self.config["plugin_dir"])
            if self.config.get("realtime"):
                self.worker = RealtimeWorker(
                    self.config["plugin_id"], plugin_dir, self.config["parameters"], self.config["memory_bytes"]
                )
            else:
                self.worker = PluginWorker(
                    self.config["plugin_id"],
                    plugin_dir,
                    self.config["parameters"],
                    self.config["memory_bytes"],
                    self._container(),
                )
            self._wipe_scratch()
            error, seconds = self.worker.load_error, self.worker.load_seconds
        header: dict[str, Any] = {"reply_to": hello.header.get("id"), "load_seconds": seconds}
        if error is not None:
            header["load_error"] = {"reason": str(error.reason), "message": error.message, "hint": error.hint}
        self.channel.send(header)

    def _container(self) -> Any:
        """``container``: the secrets granted to the plugin, and ``llm`` through the supervisor."""
        from featurebus.sdk.container import PlatformLLM, PluginContainer, Secrets

        secrets = Secrets(self.config.get("secrets") or {}, self.config.get("namespace_id"), self.config["plugin_id"])
        return PluginContainer(llm=PlatformLLM(self._llm) if self.config.get("llm") else None, secrets=secrets)

    def _llm(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ``container.llm`` call, made by the supervisor (which holds the provider's key)."""
        from featurebus.sdk.container import LLMError

        try:
            result = self.channel.call("llm", {"request": request}).header.get("result")
        except RemoteError as exc:
            hint = exc.extra.get("hint")
            raise LLMError(exc.detail, hint if isinstance(hint, str) else None) from None
        if not isinstance(result, dict):
            raise LLMError("the platform's LLM gateway answered without a result")
        return result

    def answer(self, message: Message) -> Message:
        op = message.header.get("op")
        with self._lock:
            self._busy += 1
        try:
            if op == "process":
                return self._process(message.body)
            if op == "embed":
                return self._embed(message.header.get("texts"))
            if op == "infer":
                return self._infer(message.header.get("inputs"), message.header.get("parameters"))
            if op == "stats":
                return Message({"stats": self.worker.stats()})
            raise RemoteError("unsupported", f"unknown call {op!r}")
        finally:
            with self._lock:
                self._busy -= 1
                idle = self._busy == 0
            if idle and op == "process":
                self._wipe_scratch()

    def _process(self, frame: bytes) -> Message:
        from featurebus.common.events import ReasonCode
        from featurebus.common.frames import from_parquet
        from featurebus.inference.plugin_worker import all_rows_failed

        mark = self.guard.count()
        output = self.worker.process(frame)
        refused = self.guard.since(mark)
        if refused:  # refused even where the plugin caught the error: the whole frame fails
            more = f" (and {len(refused) - 1} more refusals)" if len(refused) > 1 else ""
            failures = all_rows_failed(
                from_parquet(frame), ReasonCode.SANDBOX_VIOLATION, refused[0] + more, VIOLATION_HINT
            )
            output.failures, output.vectors_parquet, output.rows_embedded = failures, None, 0
        header = {
            "failures": [f.model_dump(mode="json") for f in output.failures],
            "rows_in": output.rows_in,
            "rows_embedded": output.rows_embedded,
            "load_failed": output.load_failed,
        }
        return Message(header, output.vectors_parquet or b"")

    def _embed(self, texts: Any) -> Message:
        from featurebus.runtime import PluginError
        from featurebus.runtime.queries import is_query

        if not isinstance(texts, list) or not all(is_query(t) for t in texts):
            raise RemoteError("plugin_error", "texts must list query texts or blobs", {"reason": "plugin_exception"})
        results: list[dict[str, Any]] = []
        vectors = array.array("d")
        for r in self._guarded(lambda: self.worker.embed(texts)):
            if isinstance(r, PluginError):
                results.append({"error": {"reason": str(r.reason), "message": r.message, "hint": r.hint}})
                continue
            lengths: dict[str, int] = {}
            for name, vector in r.items():
                before = len(vectors)
                vectors.extend(vector)
                lengths[name] = len(vectors) - before
            results.append({"vectors": lengths})
        # The vectors go in the body as float64s, in the order of the results' lengths: JSON
        # text of 384 floats took 0.2 ms to write here, the bytes take microseconds (and are exact).
        return Message({"results": results}, vectors.tobytes())

    def _infer(self, inputs: Any, parameters: Any) -> Message:
        if not isinstance(inputs, dict) or not isinstance(parameters, dict):
            raise RemoteError(
                "plugin_error", "inputs and parameters must be JSON objects", {"reason": "plugin_exception"}
            )
        return Message({"answer": self._guarded(lambda: self.worker.infer(inputs, parameters))})

    def _guarded(self, call: Any) -> Any:
        """``call()``'s result; a RemoteError for a plugin error or for anything the sandbox refused meanwhile."""
        from featurebus.runtime import PluginError

        mark = self.guard.count()
        try:
            result = call()
        except PluginError as err:
            raise RemoteError("plugin_error", err.message, {"reason": str(err.reason), "hint": err.hint}) from None
        refused = self.guard.since(mark)
        if refused:
            raise RemoteError("plugin_error", refused[0], {"reason": "sandbox_violation", "hint": VIOLATION_HINT})
        return result

    def _fetch(self, uri: str) -> bytes:
        """An asset through the supervisor, which hands over only the blobs of this frame's rows."""
        try:
            return self.channel.call("asset", {"uri": uri}).body
        except RemoteError as exc:
            if exc.kind == "refused":
                raise self.guard.refuse(exc.detail, str(exc.extra.get("hint") or "")) from None
            raise OSError(exc.detail) from None

    def _wipe_scratch(self) -> None:
        """Empty the scratch directory, except the mount points of bound paths that lie under it."""
        scratch = Path(self.config["scratch"])
        keep = {Path(p) for p in self.config["readable"] if Path(p).is_relative_to(scratch)}
        keep_parents = {parent for p in keep for parent in p.parents}
        for path in _walk_top(scratch, keep, keep_parents):
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue


def _walk_top(directory: Path, keep: set[Path], keep_parents: set[Path]) -> list[Path]:
    found: list[Path] = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry in keep:
            continue
        if entry in keep_parents:
            found.extend(_walk_top(entry, keep, keep_parents))
        else:
            found.append(entry)
    return found


if __name__ == "__main__":
    main()
