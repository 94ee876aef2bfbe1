"""Inference without Ray or Kafka servers: frames in, vector sets and reconciled counts out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from inference_twins import TOY_PIPELINE, InProcessPools, MemoryStore, toy_archive

from featurebus.common.events import (
    BatchReady,
    FeatureSpec,
    PluginRef,
    ReasonCode,
    RetrievalAnswered,
    RetrievalEmbedded,
    RetrievalRequested,
    SearchSpec,
    VectorsProduced,
)
from featurebus.common.frames import FRAME_COLUMNS, from_parquet, to_parquet
from featurebus.common.objectstore import sha256_hex
from featurebus.inference.config import InferenceSettings
from featurebus.inference.main import build
from featurebus.inference.worker import PluginWorker

PREFIX = "inf."


def frame(texts: list[str]) -> bytes:
    rows = []
    for i, text in enumerate(texts):
        row = {c: f"{c}_{i}" for c, t in FRAME_COLUMNS.items() if t == "str"}
        row.update(data=text, blob_type="text", mime_type="text/plain", size_bytes=0)
        rows.append(row)
    return to_parquet(pd.DataFrame(rows))


async def plugin_ref(store: MemoryStore, archive: bytes) -> PluginRef:
    uri = await store.put_bytes("plugins/toy.zip", archive)
    return PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri=uri,
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
    )


async def batch_ready(store: MemoryStore, plugin: PluginRef, texts: list[str]) -> BatchReady:
    data = frame(texts)
    uri = await store.put_bytes("frames/b1/f1.parquet", data)
    return BatchReady(
        org_id="o",
        namespace_id="n",
        bucket_id="bkt",
        batch_id="b1",
        frame_id="frm_1",
        frame_index=0,
        collection_id="col",
        plugin=plugin,
        frame_uri=uri,
        frame_sha256=sha256_hex(data),
        row_count=len(texts),
    )


def test_worker_loads_once_and_reports_a_load_failure_for_every_row(tmp_path: Path) -> None:
    worker = PluginWorker("toy_1_0_0", toy_archive(), None, str(tmp_path))
    for _ in range(3):
        assert worker.process(frame(["ab", "abc"])).rows_embedded == 2
    assert worker.stats()["model_loads"] == 1 and worker.stats()["frames"] == 3

    broken = PluginWorker(
        "bad_1_0_0", toy_archive(TOY_PIPELINE.replace("import PipelineDefinition", "import Nope")), None, str(tmp_path)
    )
    output = broken.process(frame(["a", "b", "c"]))
    assert output.rows_in == 3 and output.rows_embedded == 0 and output.vectors_parquet is None
    assert {f.reason for f in output.failures} == {ReasonCode.PLUGIN_LOAD_FAILED}
    assert "Nope" in output.failures[0].message


@pytest.fixture
def service(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = MemoryStore()
    settings = InferenceSettings(topic_prefix=PREFIX, data_dir=tmp_path)
    return build(settings, store=store, pools=InProcessPools(str(tmp_path)))  # type: ignore[arg-type]


async def test_batch_ready_becomes_a_vector_set_and_vectors_produced(service) -> None:  # type: ignore[no-untyped-def]
    store: MemoryStore = service.store
    produced: list[VectorsProduced] = []

    @service.bus.broker.subscriber(PREFIX + "vectors.produced")
    async def capture(event: VectorsProduced) -> None:
        produced.append(event)

    plugin = await plugin_ref(store, toy_archive())
    async with TestKafkaBroker(service.bus.broker):
        await service.bus.publish(await batch_ready(store, plugin, ["a", "bbb"]))
    [event] = produced
    assert (event.rows_in, event.rows_embedded, event.failures) == (2, 2, [])
    vectors = from_parquet(await store.get_bytes(event.vectors_uri, event.vectors_sha256))
    assert [list(v) for v in vectors["vec"]] == [[1.0, 1.0], [3.0, 1.0]]
    assert set(vectors.columns) == {"document_id", "object_id", "blob_id", "vec", "payload"}


async def test_a_tampered_frame_is_dead_lettered(service) -> None:  # type: ignore[no-untyped-def]
    store: MemoryStore = service.store
    dead: list[dict[str, str]] = []

    @service.bus.broker.subscriber(PREFIX + "batch.ready.dlq")
    async def capture(message: KafkaMessage) -> None:
        dead.append(message.headers)

    plugin = await plugin_ref(store, toy_archive())
    event = await batch_ready(store, plugin, ["a"])
    store.objects[event.frame_uri] = frame(["tampered"])
    async with TestKafkaBroker(service.bus.broker):
        await service.bus.publish(event)
    assert dead and "ChecksumMismatch" in dead[0]["featurebus-error"]


async def test_query_is_embedded_by_the_plugins_batch_steps(service) -> None:  # type: ignore[no-untyped-def]
    store: MemoryStore = service.store
    embedded: list[RetrievalEmbedded] = []
    answered: list[RetrievalAnswered] = []

    @service.bus.broker.subscriber(PREFIX + "retrieval.embedded")
    async def on_embedded(event: RetrievalEmbedded) -> None:
        embedded.append(event)

    @service.bus.broker.subscriber(PREFIX + "retrieval.answered")
    async def on_answered(event: RetrievalAnswered) -> None:
        answered.append(event)

    plugin = await plugin_ref(store, toy_archive())
    search = SearchSpec(feature_name="vec", query_text="four", plugin=plugin, collection_ids=["col"])
    async with TestKafkaBroker(service.bus.broker):
        await service.bus.publish(RetrievalRequested(request_id="r1", org_id="o", namespace_id="n", searches=[search]))
        await service.bus.publish(
            RetrievalRequested(
                request_id="r2",
                org_id="o",
                namespace_id="n",
                searches=[search.model_copy(update={"feature_name": "nope"})],
            )
        )
    assert embedded[0].request_id == "r1" and embedded[0].searches[0].vector == [4.0, 1.0]
    assert answered[0].request_id == "r2" and "nope" in (answered[0].error or "")
