"""The client side of tracing over the internal HTTP APIs: an httpx transport that opens a CLIENT
span per request sent and carries its context in the W3C ``traceparent`` header.

The server side is :class:`~featurebus.common.http_observing.ObservedRequests` (inside every
:class:`~featurebus.common.internal_api.ServiceTokenGuard`). httpx is imported here only: the
services that call an internal API depend on it, featurebus-common does not.
"""

from __future__ import annotations

import httpx
from opentelemetry.trace import StatusCode

from featurebus.common.telemetry import client_span, inject_trace

__all__ = ["TracedTransport"]


class TracedTransport(httpx.AsyncBaseTransport):
    """Wraps ``inner``: each request (each retry too) is one CLIENT span named ``METHOD /path``."""

    def __init__(self, inner: httpx.AsyncBaseTransport, peer: str) -> None:
        self.inner, self.peer = inner, peer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = f"{request.method} {request.url.path}"
        with client_span(name, **{"peer.service": self.peer, "http.request.method": request.method}) as span:
            request.headers.update(inject_trace())
            response = await self.inner.handle_async_request(request)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                span.set_status(StatusCode.ERROR)
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()
