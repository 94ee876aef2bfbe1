"""One span and one latency observation per HTTP request a service answers.

:class:`ObservedRequests` wraps the registry's REST app and, through
:class:`~featurebus.common.internal_api.ServiceTokenGuard`, every internal API: the span continues
the caller's trace (W3C ``traceparent`` header) and is named after the route template
(``POST /internal/v1/embed``), and ``featurebus_http_request_duration_seconds`` gets the time to
the end of the response, labelled by that template (a path no route matched is ``unmatched``:
ids in paths must not become labels).

FastAPI 0.16x opens that SERVER span itself once a tracer provider is set (its native telemetry,
outside every middleware; it marks the scope with ``fastapi.telemetry``): then no second span is
opened here, only the duration is observed.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode

from featurebus.common.metrics import HTTP_DURATION
from featurebus.common.telemetry import server_span

__all__ = ["ObservedRequests", "route_of"]


def route_of(scope: dict[str, Any] | Any) -> str:
    """The template of the route that answered (Starlette/FastAPI put it in the scope), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class ObservedRequests:
    """ASGI middleware: a SERVER span (unless FastAPI opened one) and a duration per HTTP request."""

    def __init__(self, app: Any, service: str) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        status = 500  # what a request that raised past every handler becomes
        started = time.perf_counter()

        async def sending(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        traced_by_fastapi = scope.get("fastapi.telemetry") is not None
        opened: AbstractContextManager[trace.Span | None] = (
            nullcontext() if traced_by_fastapi else server_span(f"{self.service} {method}", headers)
        )
        with opened as span:
            try:
                await self.app(scope, receive, sending)
            finally:
                route = route_of(scope)
                if span is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.request.method", method)
                    span.set_attribute("http.route", route)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                HTTP_DURATION.labels(self.service, method, route, str(status)).observe(time.perf_counter() - started)
