"""What the services' internal HTTP APIs share: the service token, and serving inside a service.

The internal APIs (inference's embed, the indexer's search; payloads in
:mod:`featurebus.common.queries`) are for other featurebus services only. Every request must carry
``Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>``; anything else is a 401, and a service with
no token configured refuses every request. :class:`InternalServer` runs such an app with uvicorn
in the service's own event loop, next to its Kafka consumers (the service handles the signals).

uvicorn is imported only by :class:`InternalServer`: the services that serve an internal API depend on
it (and on FastAPI), featurebus-common and the plugin SDK do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from pydantic import SecretStr

from featurebus.common.http_observing import ObservedRequests
from featurebus.common.metrics import MetricsEndpoint

__all__ = ["InternalServer", "ServiceTokenGuard", "bearer", "token_matches"]

log = logging.getLogger("featurebus.internal_api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def bearer(token: SecretStr | str | None) -> dict[str, str]:
    """The header a caller sends (none when it has no token: the call is then refused)."""
    if token is None:
        return {}
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return {"Authorization": f"Bearer {value}"}


def token_matches(authorization: str | None, token: SecretStr | None) -> bool:
    """Whether an ``Authorization`` header carries ``token``, compared in constant time."""
    if token is None or not token.get_secret_value() or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.get_secret_value().encode())


class ServiceTokenGuard:
    """ASGI middleware: every HTTP request without the service token is answered 401 (JSON ``detail``).

    A request let through gets a span continuing the caller's trace (its ``traceparent`` header)
    and a duration in ``featurebus_http_request_duration_seconds`` (:class:`ObservedRequests`).
    """

    def __init__(self, app: ASGIApp, token: SecretStr | None, service: str) -> None:
        self.app, self.token, self.service = app, token, service
        self._observed = ObservedRequests(app, service)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        authorization = headers.get(b"authorization", b"").decode("latin-1") or None
        if token_matches(authorization, self.token):
            await self._observed(scope, receive, send)
            return
        if self.token is None or not self.token.get_secret_value():
            detail = f"the {self.service} service has no FEATUREBUS_INTERNAL_TOKEN and refuses every request"
        else:
            detail = f"the {self.service} internal API needs Authorization: Bearer <FEATUREBUS_INTERNAL_TOKEN>"
        body = json.dumps({"detail": detail, "hint": "give every service the same FEATUREBUS_INTERNAL_TOKEN"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


class InternalServer:
    """An ASGI app served by uvicorn inside the running service (no signal handlers of its own).

    With ``metrics``, ``GET /metrics`` answers with the process's Prometheus series, without the
    service token (labels carry no tenant data; the server listens on loopback unless told otherwise).
    """

    def __init__(self, app: ASGIApp, host: str, port: int, name: str, *, metrics: bool = False) -> None:
        import uvicorn  # only where an internal API is served

        if metrics:
            app = MetricsEndpoint(app)

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the service's run_until_signalled owns them
                yield

        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=75
        )
        self.name, self.host, self.port = name, host, port
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; returns once the socket is bound, RuntimeError naming the address when it cannot be."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
        # so, and with it on, a response written in two parts waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"the {self.name} internal API cannot listen on {self.host}:{self.port}: {exc} "
                f"(set FEATUREBUS_{self.name.upper()}_HOST / FEATUREBUS_{self.name.upper()}_PORT)"
            ) from exc
        sock.setblocking(False)
        self.port = sock.getsockname()[1]  # the real one when 0 was asked for
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name=f"{self.name}-internal-api")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError(f"the {self.name} internal API stopped while starting")
            await asyncio.sleep(0.01)
        log.info("%s internal API on http://%s:%d", self.name, self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, let requests in hand finish (briefly), and close."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=10)
        except TimeoutError:
            log.warning("%s internal API: requests still in hand after 10s, closed", self.name)
        self._task = None
