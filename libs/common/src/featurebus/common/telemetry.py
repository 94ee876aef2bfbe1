"""Logs and traces.

Log lines are single-line ``key=value`` text on stderr so that an ERROR naming a failed row can
be grepped. Trace context travels inside each event (``Event.trace``) rather than in Kafka
headers, so it survives the DLQ and a replay; over the internal HTTP APIs it travels in the
W3C ``traceparent`` header (:func:`inject_trace` on the caller, :func:`server_span` on the server).

Spans are exported over OTLP/HTTP (a ``BatchSpanProcessor``) when the standard OpenTelemetry
variables ask for it (:func:`span_exporters`), and to the log with ``FEATUREBUS_TRACE_TO_LOG``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import SpanKind

from featurebus.common.events import Event
from featurebus.common.settings import CommonSettings

__all__ = [
    "client_span",
    "configure",
    "inject_trace",
    "otlp_traces_endpoint",
    "server_span",
    "span_exporters",
    "span_for",
    "tracer",
]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Where an OTLP/HTTP collector listens when OTEL_TRACES_EXPORTER=otlp names no endpoint (the spec's default).
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"
_TRACES_PATH = "/v1/traces"

log = logging.getLogger("featurebus.telemetry")


def configure(service: str, settings: CommonSettings) -> TracerProvider:
    """Set up logging and the tracer provider for one service process (call once, in main).

    The provider flushes its batched spans when the process exits.
    """
    logging.basicConfig(level=settings.log_level.upper(), format=_FORMAT, stream=sys.stderr, force=True)
    for noisy in ("aiokafka", "pymongo", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    name = settings.otel_service_name or f"featurebus-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    if settings.trace_to_log:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    for exporter in span_exporters(settings):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    endpoint = otlp_traces_endpoint(settings)
    if endpoint:
        log.info("traces of %s go to %s (OTLP/HTTP)", name, endpoint)
    return provider


def otlp_traces_endpoint(settings: CommonSettings) -> str | None:
    """The OTLP/HTTP traces URL the settings ask for, or None for no OTLP export.

    As the OpenTelemetry spec has it: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the URL itself,
    OTEL_EXPORTER_OTLP_ENDPOINT a base URL that gets ``/v1/traces``. Either turns the exporter on
    unless OTEL_TRACES_EXPORTER says otherwise (``none``, ``console``); ``otlp`` alone uses
    http://localhost:4318. OTEL_SDK_DISABLED=true turns every exporter off.
    """
    if settings.otel_sdk_disabled:
        return None
    wanted = _exporter_names(settings)
    explicit = settings.otel_exporter_otlp_traces_endpoint or (
        settings.otel_exporter_otlp_endpoint.rstrip("/") + _TRACES_PATH
        if settings.otel_exporter_otlp_endpoint
        else None
    )
    if wanted is None:
        return explicit
    if "otlp" not in wanted:
        return None
    return explicit or DEFAULT_OTLP_ENDPOINT + _TRACES_PATH


def span_exporters(settings: CommonSettings) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER and the OTLP endpoints ask for (none when nothing is set)."""
    exporters: list[SpanExporter] = []
    endpoint = otlp_traces_endpoint(settings)
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter(endpoint=endpoint))
    wanted = _exporter_names(settings) or set()
    if "console" in wanted and not settings.otel_sdk_disabled and not settings.trace_to_log:
        exporters.append(ConsoleSpanExporter(out=sys.stderr))
    unknown = wanted - {"otlp", "console", "none"}
    if unknown:
        log.warning("OTEL_TRACES_EXPORTER names %s: only otlp, console and none exist here", sorted(unknown))
    return exporters


def _exporter_names(settings: CommonSettings) -> set[str] | None:
    raw = settings.otel_traces_exporter
    if raw is None or not raw.strip():
        return None
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def tracer() -> trace.Tracer:
    return trace.get_tracer("featurebus")


def inject_trace() -> dict[str, str]:
    """The current span's context: for an outgoing event's ``trace`` field, or an HTTP request's headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def span_for(name: str, event: Event) -> Iterator[trace.Span]:
    """A span that continues the trace the event came from."""
    ctx = propagate.extract(event.trace)
    with tracer().start_as_current_span(name, context=ctx, kind=SpanKind.CONSUMER) as span:
        span.set_attribute("featurebus.event_id", event.event_id)
        yield span


@contextmanager
def server_span(name: str, headers: Mapping[str, str]) -> Iterator[trace.Span]:
    """A span for one HTTP request served, continuing the trace of the caller's ``traceparent``."""
    ctx = propagate.extract(dict(headers))
    with tracer().start_as_current_span(name, context=ctx, kind=SpanKind.SERVER) as span:
        yield span


@contextmanager
def client_span(name: str, **attributes: str) -> Iterator[trace.Span]:
    """A span for one call to another service; send :func:`inject_trace` in its headers inside it."""
    with tracer().start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span
