"""Logs and traces.

Log lines are single-line ``key=value`` text on stderr so that an ERROR naming a failed row can
be grepped. Trace context travels inside each event (``Event.trace``) rather than in Kafka
headers, so it survives the DLQ and a replay.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from featurebus.common.events import Event

__all__ = ["configure", "inject_trace", "span_for"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(service: str, level: str = "INFO", trace_to_log: bool = False) -> None:
    """Set up logging and the tracer provider for one service process (call once, in main)."""
    logging.basicConfig(level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True)
    for noisy in ("aiokafka", "pymongo", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    provider = TracerProvider(resource=Resource.create({"service.name": f"featurebus-{service}"}))
    if trace_to_log:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    trace.set_tracer_provider(provider)


def inject_trace() -> dict[str, str]:
    """The current span's context, to store in an outgoing event's ``trace`` field."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def span_for(name: str, event: Event) -> Iterator[trace.Span]:
    """A span that continues the trace the event came from."""
    ctx = propagate.extract(event.trace)
    with trace.get_tracer("featurebus").start_as_current_span(name, context=ctx) as span:
        span.set_attribute("featurebus.event_id", event.event_id)
        yield span
