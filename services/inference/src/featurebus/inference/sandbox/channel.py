"""A two-way call channel over a pair of pipes between the supervisor and its sandboxed child.

Each message is ``[u32 header length][u32 body length][JSON header][body bytes]``: JSON and raw
bytes only, never pickle, because the child runs untrusted code and the supervisor must not
execute what it sends. Either side may call the other (the supervisor sends frames, the child asks
for assets); ``id`` pairs a reply with its call, so calls may overlap.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = ["Channel", "ChannelClosed", "Message", "RemoteError"]

_PREFIX = struct.Struct("!II")
MAX_HEADER = 16 * 1024 * 1024
MAX_BODY = 2 * 1024 * 1024 * 1024 - 1


class ChannelClosed(ConnectionError):
    """The other side is gone (it exited, was killed, or broke the framing)."""


class RemoteError(Exception):
    """The other side answered a call with an error; ``kind`` and ``detail`` say which."""

    def __init__(self, kind: str, detail: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.extra = kind, detail, extra or {}


@dataclass
class Message:
    header: dict[str, Any]
    body: bytes = b""


Handler = Callable[[Message], Message]


@dataclass
class Channel:
    """Calls over ``reader``/``writer``; ``handler`` answers the other side's calls (in threads)."""

    reader: IO[bytes]
    writer: IO[bytes]
    handler: Handler | None = None
    handler_threads: int = 8
    _next_id: int = 0
    _pending: dict[int, Future[Message]] = field(default_factory=dict)
    _write_lock: threading.Lock = field(default_factory=threading.Lock)
    _state_lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: BaseException | None = None
    _pool: ThreadPoolExecutor | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Channel:
        self._pool = ThreadPoolExecutor(self.handler_threads, thread_name_prefix="channel-handler")
        self._thread = threading.Thread(target=self._read_loop, name="channel-reader", daemon=True)
        self._thread.start()
        return self

    def call(
        self, op: str, header: dict[str, Any] | None = None, body: bytes = b"", timeout: float | None = None
    ) -> Message:
        """Send ``op`` and wait for its reply; RemoteError if it failed there, ChannelClosed if gone."""
        future: Future[Message] = Future()
        with self._state_lock:
            if self._closed is not None:
                raise ChannelClosed(str(self._closed))
            self._next_id += 1
            call_id = self._next_id
            self._pending[call_id] = future
        try:
            self._send({**(header or {}), "op": op, "id": call_id}, body)
            reply = future.result(timeout)
        finally:
            with self._state_lock:
                self._pending.pop(call_id, None)
        if "error" in reply.header:
            error = reply.header["error"]
            raise RemoteError(str(error.get("kind", "error")), str(error.get("detail", "")), error)
        return reply

    def read_one(self) -> Message:
        """Read one message before :meth:`start` (the child's configuration, read before threads)."""
        return self._read()

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        """Send one message as it is (a reply built by hand carries ``reply_to``)."""
        self._send(header, body)

    def close(self, why: str = "closed") -> None:
        self._fail_all(ChannelClosed(why))
        for stream in (self.writer, self.reader):
            with contextlib.suppress(OSError):
                stream.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------------- internals

    def _send(self, header: dict[str, Any], body: bytes) -> None:
        data = json.dumps(header, separators=(",", ":")).encode()
        with self._write_lock:
            try:
                self.writer.write(_PREFIX.pack(len(data), len(body)) + data)
                if body:
                    self.writer.write(body)
                self.writer.flush()
            except (OSError, ValueError) as exc:
                raise ChannelClosed(f"cannot write to the other side: {exc}") from None

    def _read_loop(self) -> None:
        try:
            while True:
                message = self._read()
                reply_to = message.header.get("reply_to")
                if isinstance(reply_to, int):
                    with self._state_lock:
                        future = self._pending.get(reply_to)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif self._pool is not None:
                    self._pool.submit(self._answer, message)
        except BaseException as exc:  # EOF, a broken frame: every caller learns the other side is gone
            self._fail_all(exc if isinstance(exc, ChannelClosed) else ChannelClosed(str(exc)))

    def _read(self) -> Message:
        prefix = self._exactly(_PREFIX.size)
        header_len, body_len = _PREFIX.unpack(prefix)
        if header_len > MAX_HEADER or body_len > MAX_BODY:
            raise ChannelClosed(f"message too large ({header_len} + {body_len} bytes)")
        header = json.loads(self._exactly(header_len))
        if not isinstance(header, dict):
            raise ChannelClosed("a message header is not a JSON object")
        return Message(header, self._exactly(body_len) if body_len else b"")

    def _exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = self.reader.read(left)
            if not chunk:
                raise ChannelClosed("the other side closed the channel")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _answer(self, message: Message) -> None:
        call_id = message.header.get("id")
        try:
            if self.handler is None:
                raise RemoteError("unsupported", f"no calls are accepted here (op {message.header.get('op')!r})")
            reply = self.handler(message)
            header, body = dict(reply.header), reply.body
        except RemoteError as exc:
            header, body = {"error": {**exc.extra, "kind": exc.kind, "detail": exc.detail}}, b""
        except Exception as exc:
            header, body = {"error": {"kind": "internal", "detail": f"{type(exc).__name__}: {exc}"}}, b""
        header["reply_to"] = call_id
        with contextlib.suppress(ChannelClosed):
            self._send(header, body)

    def _fail_all(self, exc: BaseException) -> None:
        with self._state_lock:
            if self._closed is None:
                self._closed = exc
            pending = list(self._pending.values())
        for future in pending:
            if not future.done():
                future.set_exception(exc)
