"""The indexer's subscribers over FastStream's TestKafkaBroker, in-memory Qdrant and object store,
and its internal search API over httpx's ASGITransport (no socket)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import UnexpectedResponse

from featurebus.common import ids
from featurebus.common.events import (
    BatchIndexed,
    CollectionLifecycle,
    FeatureSpec,
    ReasonCode,
    RowFailure,
    VectorIndex,
    VectorsProduced,
)
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import SEARCH_PATH, LikeDocument, SearchRequest, SearchResponse, VectorSearch
from featurebus.indexer.config import IndexerSettings
from featurebus.indexer.indexing import CollectionNotReady
from featurebus.indexer.main import IndexerService, build
from featurebus.indexer.vector_schema import VectorSpec

PREFIX = "t-idx."
TOKEN = "indexer-test-token"
PLUGIN = "text_embed_1_0_0"


@dataclass
class Harness:
    service: IndexerService
    store: MemoryObjectStore
    indexed: list[BatchIndexed] = field(default_factory=list)
    dead: list[dict[str, str]] = field(default_factory=list)

    async def publish(self, event: Any) -> None:
        await self.service.bus.publish(event)

    async def create(self, collection_id: str, *vectors: tuple[str, int, str]) -> None:
        await self.publish(lifecycle(collection_id, *vectors))

    async def count(self, collection_id: str) -> int:
        return await self.service.index.count(collection_id)

    async def search(self, request: SearchRequest, token: str | None = TOKEN) -> httpx.Response:
        """POST the request to the internal search API, as the registry does."""
        transport = httpx.ASGITransport(app=self.service.api)
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        async with httpx.AsyncClient(transport=transport, base_url="http://indexer", headers=headers) as http:
            return await http.post(SEARCH_PATH, content=request.model_dump_json())


@pytest.fixture
async def harness(memory_store: MemoryObjectStore) -> AsyncIterator[Harness]:
    service = build(
        IndexerSettings(topic_prefix=PREFIX, missing_collection_grace_s=0, internal_token=TOKEN),
        qdrant=AsyncQdrantClient(":memory:"),
        store=memory_store,
    )
    service.bus.publishes("collection.lifecycle", "vectors.produced")  # as their producers
    h = Harness(service, memory_store)
    broker = service.bus.broker

    @broker.subscriber(PREFIX + "batch.indexed")
    async def on_indexed(event: BatchIndexed) -> None:
        h.indexed.append(event)

    @broker.subscriber(PREFIX + "collection.lifecycle.dlq")
    async def on_dead_lifecycle(message: KafkaMessage) -> None:
        h.dead.append(message.headers)

    @broker.subscriber(PREFIX + "vectors.produced.dlq")
    async def on_dead_vectors(message: KafkaMessage) -> None:
        h.dead.append(message.headers)

    async with TestKafkaBroker(broker):
        yield h
    await service.index.close()


def lifecycle(collection_id: str, *vectors: tuple[str, int, str], action: str = "created") -> CollectionLifecycle:
    return CollectionLifecycle(
        action=action,
        org_id="org_1",
        namespace_id="ns_1",
        collection_id=collection_id,
        vector_indexes=[
            VectorIndex(
                name=n, dimensions=d, distance=m, feature_uri=f"mixpeek://text_embed@1.0.0/{n}", plugin_id=PLUGIN
            )
            for n, d, m in vectors
        ],
    )


async def put_vector_set(
    store: MemoryObjectStore, frame_id: str, rows: list[dict[str, Any]], features: list[str]
) -> tuple[str, str]:
    """Write a vector set the way inference does: ids, a list<float32> column per feature, payload."""
    columns: dict[str, Any] = {
        key: pa.array([r[key] for r in rows], pa.string()) for key in ("document_id", "object_id", "blob_id")
    }
    columns["blob_property"] = pa.array(["text"] * len(rows), pa.string())
    for name in features:
        columns[name] = pa.array([r.get(name) for r in rows], pa.list_(pa.float32()))
    columns["payload"] = pa.array([json.dumps(r.get("payload", {})) for r in rows], pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    data = buffer.getvalue()
    uri = await store.put_bytes(f"vectors/bat_1/{frame_id}.parquet", data)
    return uri, sha256_hex(data)


def row(n: int, collection_id: str = "col_1", **vectors: list[float] | None) -> dict[str, Any]:
    object_id, blob_id = f"obj_{n}", f"blob_{n}"
    return {
        "document_id": ids.document_id(collection_id, object_id, blob_id),
        "object_id": object_id,
        "blob_id": blob_id,
        "payload": {"text": f"text {n}", "blob_property": "text"},
        **vectors,
    }


async def produced(
    store: MemoryObjectStore,
    rows: list[dict[str, Any]],
    features: list[str],
    collection_id: str = "col_1",
    failures: list[RowFailure] | None = None,
) -> VectorsProduced:
    uri, sha = await put_vector_set(store, f"frm_{collection_id}", rows, features)
    failures = failures or []
    return VectorsProduced(
        org_id="org_1",
        namespace_id="ns_1",
        batch_id="bat_1",
        frame_id=f"frm_{collection_id}",
        collection_id=collection_id,
        plugin_id=PLUGIN,
        features=[FeatureSpec(feature_name=f, embedding_dim=3) for f in features],
        vectors_uri=uri,
        vectors_sha256=sha,
        rows_in=len(rows) + len(failures),
        rows_embedded=len(rows),
        failures=failures,
    )


# ----------------------------------------------------------------------------- lifecycle


async def test_created_collection_has_the_named_vectors_and_replay_is_a_no_op(harness: Harness) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"), ("img_emb", 2, "euclid"), ("dot_emb", 4, "dot"))
    await harness.create("col_1", ("text_emb", 3, "cosine"), ("img_emb", 2, "euclid"), ("dot_emb", 4, "dot"))
    assert await harness.service.index.schema("col_1") == {
        "text_emb": VectorSpec("text_emb", 3, "cosine"),
        "img_emb": VectorSpec("img_emb", 2, "euclid"),
        "dot_emb": VectorSpec("dot_emb", 4, "dot"),
    }
    assert harness.dead == []
    assert await harness.service.index.client.collection_exists("fb_col_1")


async def test_recreating_with_other_vectors_is_logged_and_dead_lettered(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    with caplog.at_level(logging.ERROR, logger="featurebus.indexer"):
        await harness.create("col_1", ("text_emb", 384, "cosine"))
    assert any("fb_col_1 already exists" in r.message and "384" in r.message for r in caplog.records)
    assert len(harness.dead) == 1 and "SchemaError" in harness.dead[0]["featurebus-error"]
    schema = await harness.service.index.schema("col_1")
    assert schema is not None and schema["text_emb"].size == 3  # untouched


async def test_deleted_collection_is_dropped(harness: Harness) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    await harness.publish(lifecycle("col_1", action="deleted"))
    await harness.publish(lifecycle("col_1", action="deleted"))  # replay: nothing left to delete
    assert await harness.service.index.schema("col_1") is None
    assert harness.dead == []


# ----------------------------------------------------------------------------- vectors


async def test_bad_rows_fail_with_reason_codes_and_good_rows_are_written(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    inference_failure = RowFailure(
        document_id="doc_x", object_id="obj_x", reason=ReasonCode.NULL_OUTPUT, message="plugin returned None"
    )
    good = row(1, text_emb=[0.1, 0.2, 0.3])
    unknown = row(2, txt_embedding=[0.1, 0.2, 0.3])
    wrong_dim = row(3, text_emb=[0.1, 0.2])
    event = await produced(
        harness.store, [good, unknown, wrong_dim], ["text_emb", "txt_embedding"], failures=[inference_failure]
    )
    with caplog.at_level(logging.ERROR, logger="featurebus.indexer"):
        await harness.publish(event)

    (indexed,) = harness.indexed
    assert (indexed.rows_in, indexed.rows_embedded, indexed.rows_written) == (4, 3, 1)
    assert [(f.document_id, f.reason) for f in indexed.failures] == [
        ("doc_x", ReasonCode.NULL_OUTPUT),
        (unknown["document_id"], ReasonCode.UNKNOWN_VECTOR_NAME),
        (wrong_dim["document_id"], ReasonCode.DIMENSION_MISMATCH),
    ]
    assert "has dimension 2, expected 3" in indexed.failures[2].message
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(
        "unknown_vector_name" in m and "col_1" in m and unknown["document_id"] in m and "vector=txt_embedding" in m
        for m in errors
    )
    assert any("dimension_mismatch" in m and wrong_dim["document_id"] in m and "vector=text_emb" in m for m in errors)
    assert await harness.count("col_1") == 1


async def test_points_carry_payload_and_ids(harness: Harness) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    good = row(1, text_emb=[0.1, 0.2, 0.3])
    await harness.publish(await produced(harness.store, [good], ["text_emb"]))
    point_id = ids.point_id("col_1", good["document_id"], PLUGIN)
    (point,) = await harness.service.index.client.retrieve("fb_col_1", [point_id], with_payload=True)
    assert point.payload == {
        "text": "text 1",
        "blob_property": "text",
        "document_id": good["document_id"],
        "object_id": "obj_1",
        "blob_id": "blob_1",
        "collection_id": "col_1",
        "namespace_id": "ns_1",
        "batch_id": "bat_1",
        "plugin_id": PLUGIN,
    }


async def test_replayed_vectors_write_the_same_points(harness: Harness) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    event = await produced(harness.store, [row(1, text_emb=[1, 0, 0]), row(2, text_emb=[0, 1, 0])], ["text_emb"])
    await harness.publish(event)
    await harness.publish(event)
    assert await harness.count("col_1") == 2
    assert [i.rows_written for i in harness.indexed] == [2, 2]
    assert harness.indexed[0].event_id == harness.indexed[1].event_id


async def test_vectors_for_a_missing_collection_are_retried_then_failed(harness: Harness) -> None:
    event = await produced(harness.store, [row(1, text_emb=[1, 0, 0])], ["text_emb"], collection_id="col_new")
    indexer = harness.service.indexer
    indexer.missing_collection_grace_s = 30
    with pytest.raises(CollectionNotReady):  # a TransientError: the Bus retries, never dead-letters
        await indexer.index_vectors(event)
    await harness.create("col_new", ("text_emb", 3, "cosine"))  # the lifecycle event catches up
    assert (await indexer.index_vectors(event)).rows_written == 1

    gone = await produced(harness.store, [row(1, text_emb=[1, 0, 0])], ["text_emb"], collection_id="col_gone")
    now = [0.0]
    indexer.clock = lambda: now[0]
    with pytest.raises(CollectionNotReady):
        await indexer.index_vectors(gone)
    now[0] = 31.0
    indexed = await indexer.index_vectors(gone)
    assert indexed.rows_written == 0 and [f.reason for f in indexed.failures] == [ReasonCode.WRITE_FAILED]
    assert "fb_col_gone" in indexed.failures[0].message


async def test_frame_without_vectors_reports_inference_failures(harness: Harness) -> None:
    failure = RowFailure(document_id="doc_1", object_id="obj_1", reason=ReasonCode.PLUGIN_LOAD_FAILED, message="x")
    await harness.publish(
        VectorsProduced(
            org_id="org_1",
            namespace_id="ns_1",
            batch_id="bat_1",
            frame_id="frm_1",
            collection_id="col_none",
            plugin_id=PLUGIN,
            features=[],
            rows_in=1,
            rows_embedded=0,
            failures=[failure],
        )
    )
    (indexed,) = harness.indexed
    assert indexed.rows_written == 0 and indexed.failures == [failure]


async def test_a_tampered_vector_set_is_dead_lettered(harness: Harness) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    event = await produced(harness.store, [row(1, text_emb=[1, 0, 0])], ["text_emb"])
    harness.store.objects[event.vectors_uri or ""] += b"tampered"
    await harness.publish(event)
    assert harness.indexed == []
    assert len(harness.dead) == 1 and "ChecksumMismatch" in harness.dead[0]["featurebus-error"]


# ----------------------------------------------------------------------------- searching


def retrieval(
    vector: list[float],
    collection_ids: list[str],
    feature: str = "text_emb",
    limit: int = 10,
    filters: dict[str, Any] | None = None,
) -> SearchRequest:
    return SearchRequest(
        request_id="req_1",
        namespace_id="ns_1",
        limit=limit,
        filters=filters or {},
        searches=[VectorSearch(feature_name=feature, collection_ids=collection_ids, vector=vector)],
    )


async def hits_of(harness: Harness, request: SearchRequest) -> SearchResponse:
    answer = await harness.search(request)
    assert answer.status_code == 200, answer.text
    return SearchResponse.model_validate_json(answer.content)


async def seed(harness: Harness, collection_id: str, vectors: list[list[float]], distance: str = "cosine") -> None:
    await harness.create(collection_id, ("text_emb", 3, distance))
    rows = [row(n, collection_id, text_emb=v) for n, v in enumerate(vectors)]
    await harness.publish(await produced(harness.store, rows, ["text_emb"], collection_id=collection_id))


async def test_search_returns_the_nearest_point_first_with_its_payload(harness: Harness) -> None:
    await seed(harness, "col_1", [[0, 1, 0], [1, 0, 0], [0.7, 0.7, 0]])
    (hits,) = (await hits_of(harness, retrieval([1, 0.1, 0], ["col_1"], limit=2))).hits
    assert [h.payload["object_id"] for h in hits] == ["obj_1", "obj_2"]
    assert hits[0].document_id == ids.document_id("col_1", "obj_1", "blob_1")
    assert hits[0].payload["text"] == "text 1" and hits[0].collection_id == "col_1"
    assert hits[0].score > hits[1].score


async def test_search_merges_collections_by_score_and_applies_filters(harness: Harness) -> None:
    await seed(harness, "col_a", [[1, 0, 0], [0, 0, 1]])
    await seed(harness, "col_b", [[0.9, 0.1, 0]])
    (hits,) = (await hits_of(harness, retrieval([1, 0, 0], ["col_b", "col_a"], limit=2))).hits
    assert [(h.collection_id, h.payload["object_id"]) for h in hits] == [("col_a", "obj_0"), ("col_b", "obj_0")]
    (hits,) = (await hits_of(harness, retrieval([1, 0, 0], ["col_a", "col_b"], filters={"object_id": "obj_1"}))).hits
    assert [(h.collection_id, h.payload["object_id"]) for h in hits] == [("col_a", "obj_1")]


async def test_several_searches_answer_in_the_order_asked(harness: Harness) -> None:
    await seed(harness, "col_1", [[1, 0, 0], [0, 1, 0]])
    request = retrieval([1, 0, 0], ["col_1"], limit=1)
    request.searches.append(VectorSearch(feature_name="text_emb", collection_ids=["col_1"], vector=[0, 1, 0]))
    first, second = (await hits_of(harness, request)).hits
    assert (first[0].payload["object_id"], second[0].payload["object_id"]) == ("obj_0", "obj_1")


async def test_more_like_a_stored_document_searches_by_its_vector_and_leaves_it_out(harness: Harness) -> None:
    await seed(harness, "col_a", [[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]])
    await seed(harness, "col_b", [[1, 0, 0]])
    liked = ids.document_id("col_a", "obj_0", "blob_0")
    request = retrieval([], ["col_a", "col_b"], limit=3)
    request.searches[0].like = LikeDocument(document_id=liked, plugin_id=PLUGIN)
    request.with_vectors = True
    (hits,) = (await hits_of(harness, request)).hits
    # Its own vector, [1, 0, 0], finds its twin in col_b and its neighbour; never itself.
    assert [(h.collection_id, h.payload["object_id"]) for h in hits] == [
        ("col_b", "obj_0"),
        ("col_a", "obj_1"),
        ("col_a", "obj_2"),
    ]
    assert hits[0].score == pytest.approx(1.0) and hits[0].vectors == {"text_emb": pytest.approx([1.0, 0.0, 0.0])}
    request.searches[0].like = LikeDocument(document_id="doc_nope", plugin_id=PLUGIN, collection_id="col_a")
    answer = await harness.search(request)
    assert answer.status_code == 422
    assert "document doc_nope has no vector 'text_emb' in collection(s) ['col_a']" in answer.json()["detail"]


async def test_euclid_hits_keep_qdrant_distance_order(harness: Harness) -> None:
    await seed(harness, "col_e", [[5, 5, 5], [1, 0, 0], [2, 0, 0]], distance="euclid")
    (hits,) = (await hits_of(harness, retrieval([1, 0, 0], ["col_e"]))).hits
    assert [h.payload["object_id"] for h in hits] == ["obj_1", "obj_2", "obj_0"]
    assert hits[0].score < hits[1].score  # a distance: smaller is nearer


@pytest.mark.parametrize(
    ("collections", "feature", "vector", "filters", "limit", "needle"),
    [
        (["col_missing"], "text_emb", [1.0, 0.0, 0.0], {}, 10, "collection col_missing does not exist"),
        (["col_1"], "image_emb", [1.0, 0.0, 0.0], {}, 10, "has no vector named 'image_emb' (it has ['text_emb'])"),
        (["col_1"], "text_emb", [1.0, 0.0], {}, 10, "query vector has dimension 2"),
        (["col_1"], "text_emb", [1.0, 0.0, 0.0], {"rating": 4.5}, 10, "filter 'rating'"),
        (["col_1"], "text_emb", [1.0, 0.0, 0.0], {}, 0, "limit must be positive, got 0"),
    ],
)
async def test_an_unanswerable_search_is_a_422_naming_what_is_wrong(
    harness: Harness,
    collections: list[str],
    feature: str,
    vector: list[float],
    filters: dict[str, Any],
    limit: int,
    needle: str,
) -> None:
    await seed(harness, "col_1", [[1, 0, 0]])
    answer = await harness.search(retrieval(vector, collections, feature=feature, filters=filters, limit=limit))
    assert answer.status_code == 422 and needle in answer.json()["detail"]


@pytest.mark.parametrize(
    ("token", "needle"),
    [(None, "needs Authorization: Bearer"), ("wrong-token", "needs Authorization: Bearer"), (TOKEN[:-1], "needs")],
)
async def test_the_search_api_refuses_a_request_without_the_service_token(
    harness: Harness, token: str | None, needle: str
) -> None:
    await seed(harness, "col_1", [[1, 0, 0]])
    answer = await harness.search(retrieval([1, 0, 0], ["col_1"]), token=token)
    assert answer.status_code == 401 and needle in answer.json()["detail"]
    assert answer.headers["www-authenticate"] == "Bearer"


async def test_an_indexer_without_a_token_refuses_every_search(memory_store: MemoryObjectStore) -> None:
    service = build(IndexerSettings(topic_prefix=PREFIX), qdrant=AsyncQdrantClient(":memory:"), store=memory_store)
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://indexer") as http:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
            answer = await http.post(SEARCH_PATH, json=retrieval([1, 0, 0], ["c"]).model_dump(), headers=headers)
            assert answer.status_code == 401 and "has no FEATUREBUS_INTERNAL_TOKEN" in answer.json()["detail"]
    await service.index.close()


PAYLOADS = [
    {"lang": "en", "year": 2019, "meta": {"views": 7}, "published": "2024-01-10T00:00:00Z"},
    {"lang": "de", "year": 2024, "meta": {"views": 70}, "published": "2023-05-01T00:00:00Z"},
    {"lang": "en", "year": 2021.5, "note": None},
    {"lang": "fr", "year": 2024},
    {"lang": "en"},
]


def condition(field: str, operator: str, value: Any = True) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ([condition("lang", "eq", "en")], {0, 2, 4}),
        ([condition("lang", "ne", "en")], {1, 3}),
        ([condition("lang", "in", ["de", "fr"])], {1, 3}),
        ([condition("lang", "nin", ["de", "fr"])], {0, 2, 4}),
        ([condition("year", "gte", 2021)], {1, 2, 3}),
        ([condition("year", "lt", 2021)], {0}),
        ([condition("year", "eq", 2021.5)], {2}),
        ([{"OR": [condition("lang", "eq", "de"), condition("year", "lt", 2020)]}], {0, 1}),
        ([{"NOT": [condition("lang", "eq", "en")]}], {1, 3}),
        ([{"AND": [condition("lang", "eq", "en"), {"NOT": [condition("year", "exists")]}]}], {4}),
        ([condition("meta.views", "gt", 10)], {1}),  # a nested field
        ([condition("note", "is_null")], {2}),
        ([condition("meta", "exists")], {0, 1}),
        ([condition("meta", "exists", False)], {2, 3, 4}),
        ([condition("text", "contains", "text 3")], {3}),
        ([condition("published", "gte", "2024-01-01T00:00:00Z")], {0}),
        ([condition("lang", "eq", "en"), condition("year", "gt", 2020)], {2}),  # every filter must hold
    ],
)
async def test_filters_of_the_filter_language_run_inside_qdrants_search(
    harness: Harness, where: list[dict[str, Any]], expected: set[int]
) -> None:
    await harness.create("col_1", ("text_emb", 3, "cosine"))
    rows = [row(n, text_emb=[1, n / 10, 0]) for n in range(len(PAYLOADS))]
    for r, extra in zip(rows, PAYLOADS, strict=True):
        r["payload"].update(extra)
    await harness.publish(await produced(harness.store, rows, ["text_emb"]))
    request = retrieval([1, 0, 0], ["col_1"])
    request.where = where
    (hits,) = (await hits_of(harness, request)).hits
    assert {int(h.payload["object_id"].removeprefix("obj_")) for h in hits} == expected


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ([condition("lang", "regex", "^e")], "where[0].operator 'regex' cannot run inside the vector search"),
        ([{"OR": []}], "where[0].OR must list at least one filter"),
        ([condition("year", "gt", "soon")], "where[0].value must be a number or an ISO 8601 date-time"),
    ],
)
async def test_a_filter_that_cannot_run_is_a_422_naming_its_place(
    harness: Harness, where: list[dict[str, Any]], needle: str
) -> None:
    await seed(harness, "col_1", [[1, 0, 0]])
    request = retrieval([1, 0, 0], ["col_1"])
    request.where = where
    answer = await harness.search(request)
    assert answer.status_code == 422 and needle in answer.json()["detail"]


async def test_a_search_a_qdrant_server_refuses_answers_a_422_with_its_reason(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(harness, "col_1", [[0, 1, 0]])
    body = b'{"status": {"error": "Wrong input: Vector dimension error: expected dim: 3, got 2"}, "time": 0.0}'

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise UnexpectedResponse(400, "Bad Request", body, httpx.Headers())

    monkeypatch.setattr(harness.service.index.client, "query_points", refused)
    answer = await harness.search(retrieval([1, 0, 0], ["col_1"]))
    assert answer.status_code == 422, answer.text
    assert "Qdrant refused the search (400)" in answer.text and "Vector dimension error" in answer.text
