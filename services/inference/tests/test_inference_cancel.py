"""Cancelled batches (``batch.cancelled``): their queued frames are acknowledged, not run, in every process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faststream.kafka import TestKafkaBroker
from inference_twins import InProcessActors, frame, toy_archive

from featurebus.common.events import BatchCancelled, BatchReady, FeatureSpec, PluginRef, VectorsProduced
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.inference.config import InferenceSettings
from featurebus.inference.main import InferenceService, build
from featurebus.inference.pools import WarmPools

PREFIX = "inf-cancel."


def service(tmp_path: Path, actors: InProcessActors) -> InferenceService:
    settings = InferenceSettings(topic_prefix=PREFIX, data_dir=tmp_path)
    built = build(settings, store=MemoryObjectStore(), pools=WarmPools(actors, idle_seconds=600))  # type: ignore[arg-type]
    built.bus.publishes("batch.ready", "batch.cancelled")  # the tests stand in for dispatcher and registry
    return built


async def ready(store: MemoryObjectStore, batch_id: str, frame_id: str) -> BatchReady:
    archive, data = toy_archive(), frame(["a", "bb"])
    plugin = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri=await store.put_bytes(f"plugins/n/toy/{sha256_hex(archive)}.zip", archive),
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
    )
    return BatchReady(
        org_id="o",
        namespace_id="n",
        bucket_id="bkt",
        batch_id=batch_id,
        frame_id=frame_id,
        frame_index=0,
        collection_id="col",
        plugin=plugin,
        frame_uri=await store.put_bytes(f"frames/{batch_id}/{frame_id}.parquet", data),
        frame_sha256=sha256_hex(data),
        row_count=2,
    )


def cancel(batch_id: str) -> BatchCancelled:
    return BatchCancelled(org_id="o", namespace_id="n", batch_id=batch_id, task_id=f"task_{batch_id}")


async def test_frames_of_a_cancelled_batch_are_acknowledged_not_run(tmp_path: Path) -> None:
    actors = InProcessActors(str(tmp_path / "work"))
    svc = service(tmp_path, actors)
    store: MemoryObjectStore = svc.store  # type: ignore[assignment]
    produced: list[VectorsProduced] = []

    @svc.bus.broker.subscriber(PREFIX + "vectors.produced")
    async def capture(event: VectorsProduced) -> None:
        produced.append(event)

    async with TestKafkaBroker(svc.bus.broker):
        await svc.bus.publish(await ready(store, "b1", "f1"))  # runs: not cancelled yet
        await svc.bus.publish(cancel("b1"))
        await svc.bus.publish(cancel("b1"))  # a replay changes nothing
        await svc.bus.publish(await ready(store, "b1", "f2"))  # still queued when the cancel came
        await svc.bus.publish(await ready(store, "b2", "f1"))  # another batch runs on
    assert [(e.batch_id, e.frame_id) for e in produced] == [("b1", "f1"), ("b2", "f1")]
    assert sum(w.stats()["frames"] for w in actors.spawned) == 2  # f2 of b1 never reached a worker
    assert "b1" in svc.cancelled and len(svc.cancelled) == 1


async def test_a_restarted_process_knows_the_batches_cancelled_while_it_was_down(tmp_path: Path) -> None:
    svc = service(tmp_path, InProcessActors(str(tmp_path / "work")))

    class Log:
        async def read_log(self, topic: str) -> list[Any]:
            assert topic == "batch.cancelled"
            return [cancel("b_old")]

    assert await svc.cancelled.catch_up(Log()) == 1 and "b_old" in svc.cancelled
