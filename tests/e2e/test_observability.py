"""Telemetry you can look at, on the real local stack: every service exports its spans over
OTLP/HTTP to a collector in this test, and serves Prometheus ``/metrics``.

The platform here is a second one of its own (the session's has no collector): the five services
with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at the collector on 127.0.0.1.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from stack import LocalStack, free_port

from services import LocalServices

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("registry", "dispatcher", "inference", "indexer")
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    service: str


@dataclass
class Collector:
    """An OTLP/HTTP traces receiver (protobuf ``ExportTraceServiceRequest``), spans kept in memory."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        got = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    got.append(Span(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, service))
        with self.lock:
            self.spans.extend(got)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def named(self, name: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.name == name]


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, str]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = 200
            if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                status = 404
            else:
                received.receive(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Observed:
    services: LocalServices
    api: Api
    collector: Collector
    ns: str
    bucket: str
    batch_id: str
    retriever: str


@pytest.fixture(scope="module")
def observed(
    local_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory, collector: tuple[Collector, str]
) -> Iterator[Observed]:
    received, endpoint = collector
    prefix = f"obs{secrets.token_hex(3)}."
    admin_key = "fb_" + secrets.token_urlsafe(24)
    env = {
        **local_stack.env(),
        "FEATUREBUS_TOPIC_PREFIX": prefix,
        "FEATUREBUS_MONGO_DB": f"fb_{prefix.rstrip('.')}",
        "FEATUREBUS_ADMIN_API_KEY": admin_key,
        "FEATUREBUS_METRICS_KAFKA_INTERVAL_S": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the batch span processor's flush interval (ms)
    }
    services = LocalServices(tmp_path_factory.mktemp("observed"), env, http_port=free_port())
    try:
        services.start()
        api = Api(services.base_url, admin_key)
        ns = api.namespace(f"obs-{uuid.uuid4().hex[:6]}")
        api.deploy_batch_plugin(ns, "text_embed", "1.0.0", zip_plugin(EXAMPLES / "text_embed"))
        bucket = api.text_bucket(ns, "b", ["penguins live in antarctica", "shares sold at noon", "bread rises"])
        collection = api.call(
            "POST",
            f"/v1/namespaces/{ns}/collections",
            json={
                "name": "c",
                "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
                "source": {"type": "bucket", "bucket_ids": [bucket]},
            },
        )["collection_id"]
        batches = f"/v1/namespaces/{ns}/buckets/{bucket}/batches"
        batch_id = api.call("POST", f"{batches}/trigger", json={"collection_ids": [collection]})["batch_id"]
        assert api.wait_batch(ns, bucket, batch_id)["status"] == "COMPLETED"
        stage = {
            "stage_name": "vector_search",
            "stage_type": "filter",
            "config": {
                "stage_id": "feature_search",
                "parameters": {"searches": [{"feature_uri": FEATURE_URI, "query": "{{INPUT.query}}"}]},
            },
        }
        retriever = api.call(
            "POST",
            f"/v1/namespaces/{ns}/retrievers",
            json={"name": "r", "collection_identifiers": [collection], "stages": [stage]},
        )["retriever_id"]
        yield Observed(services, api, received, ns, bucket, batch_id, retriever)
    finally:
        services.stop()


def _eventually(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _ancestors(span: Span, trace: list[Span]) -> list[Span]:
    by_id = {s.span_id: s for s in trace}
    chain = []
    while span.parent_id and span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def test_one_trace_holds_the_whole_ingest_from_the_rest_trigger_to_the_indexers_write(observed: Observed) -> None:
    def chain() -> tuple[Span, list[Span], list[Span]]:
        writes = [s for s in observed.collector.named("qdrant.upsert") if s.service == "featurebus-indexer"]
        assert writes, "no qdrant.upsert span from the indexer yet"
        trace = observed.collector.trace(writes[0].trace_id)
        services = {s.service for s in trace}
        assert {f"featurebus-{name}" for name in SERVICES} <= services, services
        return writes[0], trace, _ancestors(writes[0], trace)

    _write, trace, ancestors = _eventually(chain)
    names = [(s.service, s.name) for s in ancestors]
    # Child to root: the Qdrant write in the indexer's handler, inference's frame, the dispatcher's
    # trigger, and the registry's REST request for .../batches/trigger.
    assert names[0] == ("featurebus-indexer", "indexer.vectors_produced"), names
    assert ("featurebus-inference", "inference.batch_ready") in names
    assert ("featurebus-dispatcher", "dispatcher.batch_triggered") in names
    root = ancestors[-1]
    assert root.service == "featurebus-registry" and not root.parent_id and "batches/trigger" in root.name, names
    assert len({s.trace_id for s in trace}) == 1


def test_a_retriever_query_is_one_trace_over_the_internal_apis(observed: Observed) -> None:
    path = f"/v1/namespaces/{observed.ns}/retrievers/{observed.retriever}/execute"
    results = observed.api.call("POST", path, json={"input": {"query": "penguins"}})["results"]
    assert results

    def traced() -> list[Span]:
        executes = observed.collector.named("POST /v1/namespaces/{ns}/retrievers/{retriever_id}/execute")
        assert executes, sorted({s.name for s in observed.collector.spans})
        trace = observed.collector.trace(executes[-1].trace_id)
        servers = {(s.service, s.name) for s in trace}
        assert ("featurebus-inference", "POST /internal/v1/embed") in servers, servers
        assert ("featurebus-indexer", "POST /internal/v1/search") in servers, servers
        return trace

    trace = _eventually(traced)
    for span in trace:
        if span.service in ("featurebus-inference", "featurebus-indexer"):
            assert _ancestors(span, trace)[-1].service == "featurebus-registry", span


def _metrics(url: str) -> str:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_every_service_serves_its_series_on_metrics(observed: Observed) -> None:
    services = observed.services
    urls = {
        "registry": services.base_url,
        "inference": services.inference_url,
        "indexer": services.indexer_url,
        "dispatcher": f"http://127.0.0.1:{services.metrics_ports['dispatcher']}",
        "scanner": f"http://127.0.0.1:{services.metrics_ports['scanner']}",
    }
    assert all(url.startswith("http://127.0.0.1:") for url in urls.values())
    observed.api.call(
        "POST", f"/v1/namespaces/{observed.ns}/retrievers/{observed.retriever}/execute", json={"input": {"query": "q"}}
    )

    def series() -> dict[str, str]:
        text = {name: _metrics(url) for name, url in urls.items()}
        for name in ("dispatcher", "inference", "indexer"):
            assert f'featurebus_frames_processed_total{{service="{name}"}} 1.0' in text[name], name
            assert f'featurebus_rows_processed_total{{service="{name}"}} 3.0' in text[name], name
        assert 'featurebus_rows_written_total{service="indexer"} 3.0' in text["indexer"]
        assert 'featurebus_consumer_lag_messages{group="inference-batch",topic="batch.ready"} 0.0' in text["inference"]
        assert 'featurebus_consumer_lag_messages{group="scanner",topic="plugin.uploaded"} 0.0' in text["scanner"]
        assert 'featurebus_dlq_messages{topic="vectors.produced.dlq"} 0.0' in text["indexer"]
        assert 'featurebus_dlq_messages{topic="objects.ingested.dlq"}' in text["dispatcher"]
        assert "featurebus_inference_pool_actors 1.0" in text["inference"]
        assert "featurebus_inference_actor_starts_total 1.0" in text["inference"]
        assert 'featurebus_inference_actor_calls_total{method="process",start="cold"} 1.0' in text["inference"]
        assert 'featurebus_inference_actor_calls_total{method="embed",start="warm"}' in text["inference"]
        assert 'route="/v1/namespaces/{ns}/retrievers/{retriever_id}/execute"' in text["registry"]
        assert 'route="/internal/v1/embed"' in text["inference"]
        assert 'route="/internal/v1/search"' in text["indexer"]
        return text

    text = _eventually(series, timeout=30)
    assert "featurebus_http_request_duration_seconds_bucket" in text["registry"]
