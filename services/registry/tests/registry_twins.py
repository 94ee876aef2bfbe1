"""In-memory twins for unit tests of the registry's use cases: tables, object store, bus, query services, keys.

The tables twin is checked against MongoDB by ``test_registry_tables_contract.py``, the object
store twin against S3 by ``libs/common/tests/test_objectstore_twin.py``, and the query services
twin against the HTTP adapter by ``test_registry_query_services.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet

from featurebus.common.events import Event
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import (
    EmbedRequest,
    EmbedResponse,
    EnrichRequest,
    EnrichResponse,
    EnrichResult,
    InferRequest,
    InferResponse,
    RerankRequest,
    RerankResponse,
    SearchHit,
    SearchRequest,
    SearchResponse,
)
from featurebus.registry.config import RegistrySettings
from featurebus.registry.context import Ctx
from featurebus.registry.key_rules import Principal
from featurebus.registry.records import Namespace
from featurebus.registry.tables import Tables

ORG = "org_1"
ADMIN = Principal(ORG, "key_admin", admin=True, namespaces=None)
MEMBER = Principal(ORG, "key_member", admin=False, namespaces=None)


def limited_to(*namespace_ids: str) -> Principal:
    return Principal(ORG, "key_limited", admin=False, namespaces=list(namespace_ids))


@dataclass
class RecordingBus:
    """The bus as use cases see it: every published event, with its key, in order."""

    published: list[tuple[Event, str | None]] = field(default_factory=list)

    async def publish(self, event: Event, key: str | None = None) -> None:
        self.published.append((event, key))

    def events(self, kind: type[Event]) -> list[Any]:
        return [e for e, _ in self.published if isinstance(e, kind)]


@dataclass
class QueryTwin:
    """Inference and the indexer as a retriever execution sees them: every request, in order.

    ``embed`` answers ``vector`` for each query, ``search`` answers ``hits``, ``rerank`` scores
    each document by its length, ``enrich`` answers each item from ``enrich_answers`` (by its text;
    else ``{"text": <the item's text>, "data": {"echo": <the item's text>}}``); a ``*_failure`` set
    is raised instead (an ``Unreachable`` or ``Refused`` of ``featurebus.registry.query_services``).
    """

    vector: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0])
    vectors_by_text: dict[str, list[float]] = field(default_factory=dict)  # beside ``vector``, for these texts
    hits: list[list[SearchHit]] = field(default_factory=list)
    embed_failure: Exception | None = None
    search_failure: Exception | None = None
    embedded: list[EmbedRequest] = field(default_factory=list)
    searched: list[SearchRequest] = field(default_factory=list)
    inferred: list[InferRequest] = field(default_factory=list)  # answered with {"echo": inputs}
    reranked: list[RerankRequest] = field(default_factory=list)  # scored by each document's length
    rerank_failure: Exception | None = None
    enriched: list[EnrichRequest] = field(default_factory=list)
    enrich_answers: dict[str, EnrichResult] = field(default_factory=dict)
    enrich_failure: Exception | None = None

    async def embed(self, request: EmbedRequest) -> EmbedResponse:
        self.embedded.append(request)
        if self.embed_failure is not None:
            raise self.embed_failure
        return EmbedResponse(vectors=[list(self.vectors_by_text.get(q.text, self.vector)) for q in request.queries])

    async def infer(self, request: InferRequest) -> InferResponse:
        self.inferred.append(request)
        if self.embed_failure is not None:
            raise self.embed_failure
        return InferResponse(output={"echo": request.inputs})

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        self.reranked.append(request)
        if self.rerank_failure is not None:
            raise self.rerank_failure
        return RerankResponse(scores=[float(len(d)) for d in request.documents])

    async def enrich(self, request: EnrichRequest) -> EnrichResponse:
        self.enriched.append(request)
        if self.enrich_failure is not None:
            raise self.enrich_failure
        default = [EnrichResult(text=i.text, data={"echo": i.text}) for i in request.items]
        return EnrichResponse(
            results=[self.enrich_answers.get(i.text, d) for i, d in zip(request.items, default, strict=True)]
        )

    async def search(self, request: SearchRequest) -> SearchResponse:
        self.searched.append(request)
        if self.search_failure is not None:
            raise self.search_failure
        return SearchResponse(hits=[list(h) for h in self.hits])


@dataclass
class Twins:
    c: Ctx
    tables: Tables
    store: MemoryObjectStore
    bus: RecordingBus
    queries: QueryTwin

    async def namespace(self, name: str = "docs", org: str = ORG) -> Namespace:
        ns = Namespace(id=f"ns_{name}", org_id=org, namespace_name=name)
        await self.tables.namespaces.insert(ns)
        return ns


def twins(**settings: Any) -> Twins:
    tables, store, bus, queries = Tables.in_memory(), MemoryObjectStore(), RecordingBus(), QueryTwin()
    c = Ctx(
        RegistrySettings(**settings),
        tables,
        bus,
        store,  # type: ignore[arg-type]  # ObjectStore's interface, checked against S3 by its own test
        queries,
        Fernet(Fernet.generate_key()),
    )
    return Twins(c, tables, store, bus, queries)
