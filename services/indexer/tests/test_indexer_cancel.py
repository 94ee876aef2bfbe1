"""Cancelled batches (``batch.cancelled``): the indexer writes and reports nothing more for them."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from faststream.kafka import TestKafkaBroker
from qdrant_client import AsyncQdrantClient

from featurebus.common import ids
from featurebus.common.events import (
    BatchCancelled,
    BatchIndexed,
    CollectionLifecycle,
    FeatureSpec,
    VectorIndex,
    VectorsProduced,
)
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.indexer.config import IndexerSettings
from featurebus.indexer.main import build

PREFIX = "t-idx-cancel."
PLUGIN = "text_embed_1_0_0"


async def vectors(store: MemoryObjectStore, batch_id: str, frame_id: str, n: int) -> VectorsProduced:
    """A frame of ``n`` rows of one 3-d vector ``emb``, as inference writes it."""
    objects = [f"obj_{batch_id}_{frame_id}_{i}" for i in range(n)]
    documents = [ids.document_id("col_1", o, f"{o}_blob") for o in objects]
    table = pa.table(
        {
            "document_id": pa.array(documents, pa.string()),
            "object_id": pa.array(objects, pa.string()),
            "blob_id": pa.array([f"{o}_blob" for o in objects], pa.string()),
            "emb": pa.array([[1.0, 0.0, 0.0]] * n, pa.list_(pa.float32())),
            "payload": pa.array([json.dumps({"text": o}) for o in objects], pa.string()),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    return VectorsProduced(
        org_id="org_1",
        namespace_id="ns_1",
        batch_id=batch_id,
        frame_id=frame_id,
        collection_id="col_1",
        plugin_id=PLUGIN,
        features=[FeatureSpec(feature_name="emb", embedding_dim=3)],
        vectors_uri=await store.put_bytes(f"vectors/{batch_id}/{frame_id}.parquet", data),
        vectors_sha256=sha256_hex(data),
        rows_in=n,
        rows_embedded=n,
    )


async def test_vectors_of_a_cancelled_batch_are_not_written_nor_reported(memory_store: MemoryObjectStore) -> None:
    service = build(IndexerSettings(topic_prefix=PREFIX), qdrant=AsyncQdrantClient(":memory:"), store=memory_store)
    service.bus.publishes("collection.lifecycle", "vectors.produced", "batch.cancelled")  # as their producers
    indexed: list[BatchIndexed] = []

    @service.bus.broker.subscriber(PREFIX + "batch.indexed")
    async def on_indexed(event: BatchIndexed) -> None:
        indexed.append(event)

    index = VectorIndex(
        name="emb", dimensions=3, distance="cosine", feature_uri="mixpeek://t@1.0.0/emb", plugin_id=PLUGIN
    )
    async with TestKafkaBroker(service.bus.broker):
        await service.bus.publish(
            CollectionLifecycle(
                action="created", org_id="org_1", namespace_id="ns_1", collection_id="col_1", vector_indexes=[index]
            )
        )
        await service.bus.publish(await vectors(memory_store, "bat_1", "f1", 2))  # written before the cancel
        cancel = BatchCancelled(org_id="org_1", namespace_id="ns_1", batch_id="bat_1", task_id="task_1")
        await service.bus.publish(cancel)
        await service.bus.publish(cancel)  # a replay changes nothing
        await service.bus.publish(await vectors(memory_store, "bat_1", "f2", 3))  # a frame that finished late
        await service.bus.publish(await vectors(memory_store, "bat_2", "f1", 1))  # another batch is written
    assert [(e.batch_id, e.frame_id, e.rows_written) for e in indexed] == [("bat_1", "f1", 2), ("bat_2", "f1", 1)]
    assert await service.index.count("col_1") == 3
    assert "bat_1" in service.indexer.cancelled and len(service.indexer.cancelled) == 1
    await service.index.close()


async def test_a_restarted_indexer_reads_the_cancellations_from_the_log(memory_store: MemoryObjectStore) -> None:
    service = build(IndexerSettings(topic_prefix=PREFIX), qdrant=AsyncQdrantClient(":memory:"), store=memory_store)

    class Log:
        async def read_log(self, topic: str) -> list[Any]:
            assert topic == "batch.cancelled"
            return [BatchCancelled(org_id="o", namespace_id="n", batch_id="bat_old")]

    assert await service.indexer.cancelled.catch_up(Log()) == 1 and "bat_old" in service.indexer.cancelled
    await service.index.close()
