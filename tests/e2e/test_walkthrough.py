"""The README walkthrough, through all five services on the real local stack."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from featurebus.common.events import BatchRequested, Blob, IngestedObject, ObjectsIngested

from ._client import EXAMPLES, Api, zip_plugin
from ._corpus import CAT_SENTENCE, SENTENCES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURE = "text_embed_v1_embedding"
FEATURE_URI = f"mixpeek://text_embed@1.0.0/{FEATURE}"


@pytest.fixture(scope="module")
def walkthrough(platform, api: Api):  # type: ignore[no-untyped-def]
    """Steps 1 to 6 of the README: plugin uploaded, scanned, deployed; 50 texts indexed."""
    ns = api.namespace(f"docs-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", zip_plugin(EXAMPLES / "text_embed"))
    assert plugin_id == "text_embed_1_0_0"
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status
    deployed = api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    assert deployed["status"] == "NOT_DEPLOYED"

    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "articles", "bucket_schema": {"properties": {"text": {"type": "text", "required": True}}}},
    )["bucket_id"]
    api.add_texts(ns, bucket, SENTENCES)
    collection = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "articles-minilm",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )
    batch = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger",
        json={"collection_ids": [collection["collection_id"]]},
    )
    done = api.wait_batch(ns, bucket, batch["batch_id"])
    retriever = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={
            "name": "articles-search",
            "collection_identifiers": [collection["collection_id"]],
            "stages": [
                {
                    "stage_name": "vector_search",
                    "stage_type": "filter",
                    "config": {
                        "stage_id": "feature_search",
                        "parameters": {"searches": [{"feature_uri": FEATURE_URI, "query": "{{INPUT.query}}"}]},
                    },
                }
            ],
        },
    )["retriever_id"]
    return {"ns": ns, "bucket": bucket, "collection": collection, "batch": done, "retriever": retriever}


def search(api: Api, ns: str, retriever: str, query: str, limit: int | None = None) -> list[dict]:
    body: dict = {"input": {"query": query}}
    if limit:
        body["limit"] = limit
    return api.call("POST", f"/v1/namespaces/{ns}/retrievers/{retriever}/execute", json=body)["results"]


def test_collection_shows_vector_indexes_from_the_manifest(walkthrough) -> None:  # type: ignore[no-untyped-def]
    indexes = walkthrough["collection"]["vector_indexes"]
    assert [(i["name"], i["dimensions"], i["distance"]) for i in indexes] == [(FEATURE, 384, "cosine")]


def test_batch_completes_with_reconciled_counts(walkthrough) -> None:  # type: ignore[no-untyped-def]
    batch = walkthrough["batch"]
    assert batch["status"] == "COMPLETED", batch
    assert batch["rows_in"] == batch["rows_written"] == 50
    assert batch["rows_failed"] == 0


def test_query_ranks_the_cat_sentence_first(api: Api, walkthrough) -> None:  # type: ignore[no-untyped-def]
    results = search(api, walkthrough["ns"], walkthrough["retriever"], "feline pets")
    assert results, "no results"
    assert results[0]["text"] == CAT_SENTENCE, [r["text"] for r in results[:3]]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert results[0]["document_id"].startswith("doc_")


def test_new_object_is_picked_up_and_retrigger_makes_no_duplicates(api: Api, walkthrough) -> None:  # type: ignore[no-untyped-def]
    ns, bucket, col = walkthrough["ns"], walkthrough["bucket"], walkthrough["collection"]["collection_id"]
    late = "A late entry about sourdough starters and slow fermentation."
    api.add_texts(ns, bucket, [late])
    batch = api.call("POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]})
    done = api.wait_batch(ns, bucket, batch["batch_id"])
    assert done["status"] == "COMPLETED" and done["rows_written"] == 51, done
    results = search(api, ns, walkthrough["retriever"], "bread baking with natural yeast", limit=200)
    assert results[0]["text"] == late
    ids = [r["document_id"] for r in results]
    assert len(ids) == len(set(ids)) == 51


def test_objects_published_straight_to_kafka_behave_the_same(platform, api: Api, walkthrough) -> None:  # type: ignore[no-untyped-def]
    ns, bucket, col = walkthrough["ns"], walkthrough["bucket"], walkthrough["collection"]["collection_id"]
    namespace = api.call("GET", f"/v1/namespaces/{ns}")
    text = "Volunteers planted four hundred oak saplings along the riverbank."
    event = ObjectsIngested(
        org_id=namespace["org_id"],
        namespace_id=namespace["namespace_id"],
        bucket_id=bucket,
        objects=[IngestedObject(object_id="obj_kafka_1", blobs=[Blob(blob_id="b0", property="text", data=text)])],
    )

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(platform.topic("objects.ingested"), event.model_dump_json().encode())
        finally:
            await producer.stop()

    asyncio.run(produce())

    # Ingest is asynchronous: retrigger until the object is part of a batch.
    def triggered() -> dict:
        batch = api.call(
            "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]}
        )
        return api.wait_batch(ns, bucket, batch["batch_id"])

    done = Api.wait(triggered, lambda b: b["rows_in"] >= 52, timeout=60)
    assert done["status"] == "COMPLETED", done
    results = search(api, ns, walkthrough["retriever"], "tree planting by the river")
    assert results[0]["text"] == text
    assert results[0]["object_id"] == "obj_kafka_1"


def test_a_batch_requested_on_kafka_runs_like_the_rest_trigger(platform, api: Api, walkthrough) -> None:  # type: ignore[no-untyped-def]
    ns, bucket, col = walkthrough["ns"], walkthrough["bucket"], walkthrough["collection"]["collection_id"]
    namespace = api.call("GET", f"/v1/namespaces/{ns}")
    batch_id = f"btch_kafka_{uuid.uuid4().hex[:8]}"
    event = BatchRequested(
        org_id=namespace["org_id"],
        namespace_id=namespace["namespace_id"],
        bucket_id=bucket,
        collection_ids=[col],
        batch_id=batch_id,
    )

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
        await producer.start()
        try:
            for _ in range(2):  # a replayed request starts nothing new
                await producer.send_and_wait(platform.topic("batch.requested"), event.model_dump_json().encode())
        finally:
            await producer.stop()

    asyncio.run(produce())
    path = f"/v1/namespaces/{ns}/buckets/{bucket}/batches/{batch_id}"
    Api.wait(lambda: api.http.get(path).status_code == 200, lambda found: found, timeout=60)
    done = api.wait_batch(ns, bucket, batch_id)
    assert done["status"] == "COMPLETED" and done["rows_written"] == done["rows_in"] > 0, done


def test_a_batch_request_on_kafka_that_cannot_run_goes_to_the_dlq_saying_why(platform, api: Api, walkthrough) -> None:  # type: ignore[no-untyped-def]
    namespace = api.call("GET", f"/v1/namespaces/{walkthrough['ns']}")
    event = BatchRequested(
        org_id=namespace["org_id"],
        namespace_id=namespace["namespace_id"],
        bucket_id=walkthrough["bucket"],
        collection_ids=["col_nowhere"],
        batch_id=f"btch_bad_{uuid.uuid4().hex[:8]}",
    )

    async def produce_and_read_dlq() -> dict[str, str]:
        producer = AIOKafkaProducer(bootstrap_servers=platform.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(platform.topic("batch.requested"), event.model_dump_json().encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            platform.topic("batch.requested.dlq"),
            bootstrap_servers=platform.kafka_bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async with asyncio.timeout(60):
                async for record in consumer:
                    if event.batch_id.encode() in record.value:
                        return {k: v.decode() for k, v in record.headers}
        finally:
            await consumer.stop()
        raise AssertionError("unreachable")

    headers = asyncio.run(produce_and_read_dlq())
    # The domain's refusal, not an HTTP status: the same rule as the REST trigger's 404.
    assert headers["featurebus-error"].startswith("NotFound: collection 'col_nowhere' not found"), headers
