"""One trace from a REST request to the indexer's write, and from a query to the search, in one process.

The services' own handlers and internal APIs run on one FastStream TestKafkaBroker (a shared
:class:`Bus`), an in-memory object store, in-memory Qdrant and in-process plugin actors; the spans
go to an InMemorySpanExporter. What is checked is the contract of DESIGN.md §1: every hop
continues the trace it was given (``Event.trace`` on Kafka, ``traceparent`` over HTTP).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr
from qdrant_client import AsyncQdrantClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from featurebus.common.events import (
    BatchTriggered,
    Blob,
    CollectionLifecycle,
    CollectionTarget,
    FeatureSpec,
    IngestedObject,
    ObjectsIngested,
    PluginRef,
    VectorIndex,
)
from featurebus.common.http_observing import ObservedRequests
from featurebus.common.internal_api import InternalServer
from featurebus.common.kafka import Bus
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import EmbedRequest, QueryText, SearchRequest, VectorSearch
from featurebus.common.settings import CommonSettings
from featurebus.dispatcher.config import DispatcherSettings
from featurebus.dispatcher.main import build as build_dispatcher
from featurebus.dispatcher.repository import InMemoryObjectRepository
from featurebus.indexer.config import IndexerSettings
from featurebus.indexer.main import build as build_indexer
from featurebus.inference.config import InferenceSettings
from featurebus.inference.main import build as build_inference
from featurebus.inference.pools import WarmPools
from featurebus.registry.query_services import HttpQueryServices

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "inference" / "tests"))
from inference_twins import InProcessActors, toy_archive

PREFIX = "t-trace."
TOKEN = SecretStr("t-trace-token")


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of this process in memory (the global provider can be set once: reuse it when there is one)."""
    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


@dataclass
class Stack:
    bus: Bus
    store: MemoryObjectStore
    plugin: PluginRef
    rest: httpx.AsyncClient  # the registry's REST side, as ObservedRequests wraps it
    inference_api: Any  # the internal APIs' apps, which the registry's HttpQueryServices calls
    indexer_api: Any


@contextlib.asynccontextmanager
async def served(app: Any, name: str) -> AsyncIterator[str]:
    """``app`` on a loopback port, as the service serves it: its URL."""
    server = InternalServer(app, "127.0.0.1", 0, name)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def stack(tmp_path: Path, exporter: InMemorySpanExporter) -> AsyncIterator[Stack]:
    store = MemoryObjectStore()
    bus = Bus(CommonSettings(topic_prefix=PREFIX), client_id="trace-test")
    build_dispatcher(
        DispatcherSettings(topic_prefix=PREFIX, ingest_grace_s=0),
        repository=InMemoryObjectRepository(),
        store=store,
        bus=bus,
    )
    inference = build_inference(
        InferenceSettings(topic_prefix=PREFIX, data_dir=tmp_path, internal_token=TOKEN),
        bus=bus,
        store=store,  # type: ignore[arg-type]
        pools=WarmPools(InProcessActors(str(tmp_path / "work")), idle_seconds=600),
    )
    indexer = build_indexer(
        IndexerSettings(topic_prefix=PREFIX, internal_token=TOKEN),
        qdrant=AsyncQdrantClient(":memory:"),
        store=store,
        bus=bus,
    )
    # The registry's REST routes publish these (its real routes need its tables: this stand-in
    # publishes as they do, inside the span ObservedRequests opens for the request).
    bus.publishes("objects.ingested", "batch.triggered", "collection.lifecycle")

    async def publish(request: Request) -> JSONResponse:
        event = {"ingest": ObjectsIngested, "trigger": BatchTriggered, "lifecycle": CollectionLifecycle}[
            request.path_params["kind"]
        ].model_validate_json(await request.body())
        await bus.publish(event)
        return JSONResponse({"ok": True}, status_code=201)

    rest_app = ObservedRequests(Starlette(routes=[Route("/v1/{kind}", publish, methods=["POST"])]), "registry")
    archive = toy_archive()
    uri = await store.put_bytes(f"plugins/ns_1/toy_1_0_0/{sha256_hex(archive)}.zip", archive)
    plugin = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri=uri,
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
        namespace_id="ns_1",
    )
    async with TestKafkaBroker(bus.broker):
        rest = httpx.AsyncClient(transport=httpx.ASGITransport(app=rest_app), base_url="http://registry")
        async with rest:
            yield Stack(bus, store, plugin, rest, inference.api, indexer.api)
    inference.rerankers.close()


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    found = [s for s in spans if s.name == name]
    assert found, f"no span {name!r} among {sorted({s.name for s in spans})}"
    return found


def _child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.context is not None and parent.context is not None and child.parent is not None
    return child.context.trace_id == parent.context.trace_id and child.parent.span_id == parent.context.span_id


async def _ingest_and_trigger(s: Stack) -> None:
    lifecycle = CollectionLifecycle(
        action="created",
        org_id="org_1",
        namespace_id="ns_1",
        collection_id="col_1",
        vector_indexes=[
            VectorIndex(
                name="vec",
                dimensions=2,
                distance="cosine",
                feature_uri="mixpeek://toy@1.0.0/vec",
                plugin_id="toy_1_0_0",
            )
        ],
    )
    objects = ObjectsIngested(
        org_id="org_1",
        namespace_id="ns_1",
        bucket_id="bkt_1",
        objects=[
            IngestedObject(object_id=f"obj_{i}", blobs=[Blob(blob_id=f"b_{i}", property="text", data=text)])
            for i, text in enumerate(["penguins", "live in antarctica"])
        ],
    )
    trigger = BatchTriggered(
        org_id="org_1",
        namespace_id="ns_1",
        bucket_id="bkt_1",
        batch_id="bat_1",
        collections=[CollectionTarget(collection_id="col_1", feature_extractors=[s.plugin])],
    )
    for kind, event in (("lifecycle", lifecycle), ("ingest", objects), ("trigger", trigger)):
        answer = await s.rest.post(f"/v1/{kind}", content=event.model_dump_json())
        assert answer.status_code == 201, answer.text


async def test_one_trace_runs_from_the_rest_trigger_through_every_service_to_the_qdrant_write(
    stack: Stack, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    await _ingest_and_trigger(stack)
    spans = exporter.get_finished_spans()
    roots = [s for s in _by_name(spans, "POST /v1/{kind}") if s.kind is SpanKind.SERVER]
    [dispatched] = _by_name(spans, "dispatcher.batch_triggered")
    [root] = [r for r in roots if _child_of(dispatched, r)]  # the trigger's request, not the ingest's
    assert root.parent is None and root.attributes is not None and root.attributes["http.response.status_code"] == 201
    [ran] = _by_name(spans, "inference.batch_ready")
    [indexed] = _by_name(spans, "indexer.vectors_produced")
    [written] = _by_name(spans, "qdrant.upsert")
    assert _child_of(ran, dispatched), "inference continues the dispatcher's span (BatchReady.trace)"
    assert _child_of(indexed, ran), "the indexer continues inference's span (VectorsProduced.trace)"
    assert _child_of(written, indexed), "the Qdrant write is inside the indexer's handler"
    assert written.attributes is not None and written.attributes["featurebus.points"] == 2
    assert written.end_time is not None and indexed.end_time is not None and written.end_time <= indexed.end_time
    # The ingest's own request is a trace of its own, handled by the dispatcher's ingest handler.
    [ingested] = _by_name(spans, "dispatcher.objects_ingested")
    assert any(_child_of(ingested, r) for r in roots) and ingested.context.trace_id != root.context.trace_id  # type: ignore[union-attr]


@pytest.mark.integration  # the two internal APIs listen on loopback ports, as in the services
async def test_a_query_carries_its_trace_to_the_embed_and_the_search_over_http(
    stack: Stack, exporter: InMemorySpanExporter
) -> None:
    await _ingest_and_trigger(stack)
    async with (
        served(stack.inference_api, "inference") as inference_url,
        served(stack.indexer_api, "indexer") as indexer_url,
    ):
        queries = HttpQueryServices(inference_url, indexer_url, TOKEN, 10.0)
        try:
            root_span = await _query(queries, stack, exporter)
        finally:
            await queries.aclose()
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.context.span_id == root_span.get_span_context().span_id)  # type: ignore[union-attr]
    for path in ("/internal/v1/embed", "/internal/v1/search"):
        [client] = [s for s in _by_name(spans, f"POST {path}") if s.kind is SpanKind.CLIENT]
        [server] = [s for s in _by_name(spans, f"POST {path}") if s.kind is SpanKind.SERVER]
        assert _child_of(client, root) and _child_of(server, client), path


async def _query(queries: HttpQueryServices, stack: Stack, exporter: InMemorySpanExporter) -> trace.Span:
    """An embed and a search in one root span, as a retriever execution makes them: the span."""
    exporter.clear()
    with trace.get_tracer("test").start_as_current_span("registry retriever execute") as root_span:
        embedded = await queries.embed(
            EmbedRequest(
                request_id="q1",
                namespace_id="ns_1",
                queries=[QueryText(plugin=stack.plugin, feature_name="vec", text="penguins")],
            )
        )
        [vector] = embedded.vectors
        hits = await queries.search(
            SearchRequest(
                request_id="q1",
                namespace_id="ns_1",
                searches=[VectorSearch(feature_name="vec", collection_ids=["col_1"], vector=vector)],
            )
        )
    assert len(hits.hits[0]) == 2, hits
    return root_span
