"""Which span exporters the OTEL_* variables turn on, and trace context across HTTP headers."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from featurebus.common import telemetry
from featurebus.common.settings import CommonSettings
from featurebus.common.telemetry import client_span, inject_trace, otlp_traces_endpoint, server_span, span_exporters

OTEL = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL:
        monkeypatch.delenv(name, raising=False)


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> CommonSettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CommonSettings()


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"}, "http://127.0.0.1:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:9/x"}, "http://c:9/x"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/t"},
            "http://b:2/t",
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "http://localhost:4318/v1/traces"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"}, None),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"}, "http://a:1/v1/traces"),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1"}, None),
    ],
)
def test_the_standard_variables_choose_the_otlp_endpoint(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str | None
) -> None:
    assert otlp_traces_endpoint(settings(monkeypatch, **env)) == endpoint


def test_exporters_follow_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert span_exporters(settings(monkeypatch)) == []
    both = span_exporters(settings(monkeypatch, OTEL_TRACES_EXPORTER="otlp,console"))
    assert [type(e) for e in both] == [OTLPSpanExporter, ConsoleSpanExporter]
    for exporter in both:
        exporter.shutdown()


def test_otel_service_name_is_read_from_its_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings(monkeypatch, OTEL_SERVICE_NAME="fb-registry-eu").otel_service_name == "fb-registry-eu"


def test_a_server_span_continues_the_callers_traceparent_and_a_client_span_sends_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(telemetry, "tracer", lambda: provider.get_tracer("t"))
    caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with server_span("POST /x", {"traceparent": caller}), client_span("POST /y") as client:
        sent = inject_trace()["traceparent"]
    server, _ = sorted(memory.get_finished_spans(), key=lambda s: s.kind is SpanKind.CLIENT)
    assert server.kind is SpanKind.SERVER and server.parent is not None
    assert (format(server.context.trace_id, "032x"), format(server.parent.span_id, "016x")) == (  # type: ignore[union-attr]
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
    )
    assert sent == f"00-0af7651916cd43dd8448eb211c80319c-{client.get_span_context().span_id:016x}-01"
