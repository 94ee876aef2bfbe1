"""An ASGI middleware that bounds every request body and checks it is sound JSON before routing.

The registry takes JSON bodies: archives and blobs go straight to the object store through
presigned URLs, so one limit (``max_request_bytes``) fits every route. A body over the limit gets
a 413 (at once when Content-Length says so); a body that is not sound JSON (see ``json_body``)
gets a 422 naming the place; a sound one is passed on as ``application/json`` whatever its label.
Routes that read the body by hand take the parsed value from :func:`json_of`.

The one exception is a request that ``streamed`` picks (a plugin archive sent as a multipart
form): it is passed on as it arrives, unparsed, and cut off with a 413 past ``max_stream_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featurebus.registry.json_body import BodyProblem, parse_json_body

__all__ = ["BodyGuard", "json_of"]

_PARSED = "featurebus.json_body"
# After a 413, read on up to this many more bytes so that the client is not cut off mid-send and
# gets to read the answer; a longer body gets its connection closed.
_DRAIN_BYTES = 64 * 1024 * 1024


def json_of(request: Request) -> Any:
    """The request's JSON body as BodyGuard parsed it (None for an empty body)."""
    return request.scope.get(_PARSED)


class BodyGuard:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        streamed: Callable[[Scope], bool] = lambda scope: False,
        max_stream_bytes: int = 0,
    ) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.streamed, self.max_stream_bytes = streamed, max_stream_bytes

    def _too_large(self, size: str, limit: int | None = None) -> JSONResponse:
        return JSONResponse(
            {
                "detail": f"body: the request body is {size}; the limit is {limit or self.max_bytes} bytes",
                "hint": "send files through an upload's presigned_url, and many objects in several "
                "requests; the operator sets the limit with FEATUREBUS_MAX_REQUEST_BYTES"
                if limit is None
                else "keep model weights out of the archive (see the README); the operator sets the limit with "
                "FEATUREBUS_MAX_ARCHIVE_BYTES",
            },
            status_code=413,
            headers={"connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.streamed(scope):
            await self._stream(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            if declared <= self.max_bytes + _DRAIN_BYTES:
                await self._drain(receive, 0)
            await self._too_large(f"{declared} bytes")(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        disconnected: Message | None = None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, size)
                await self._too_large(f"over {self.max_bytes} bytes")(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if raw:
            try:
                scope[_PARSED] = parse_json_body(raw)
            except BodyProblem as exc:
                await JSONResponse({"detail": str(exc), "hint": exc.hint}, status_code=422)(scope, receive, send)
                return
            # Every body is JSON, whatever it is labelled: `curl -d '{...}'` (as Mixpeek's own
            # examples are written) sends application/x-www-form-urlencoded.
            scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != b"content-type"]
            scope["headers"].append((b"content-type", b"application/json"))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if disconnected is not None:
                return disconnected
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_stream_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._too_large(f"{declared} bytes", limit)(scope, receive, send)
            return
        read, started, cut = 0, False, False

        async def bounded() -> Message:
            nonlocal read, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            read += len(message.get("body", b""))
            if read > limit:  # the app sees the client go; its answer is replaced by the 413
                cut = True
                return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if cut and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded, sending)
        except Exception:
            if not cut or started:
                raise
        if cut and not started:
            await self._too_large(f"over {limit} bytes", limit)(scope, receive, send)

    async def _drain(self, receive: Receive, read: int) -> None:
        while read < self.max_bytes + _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
