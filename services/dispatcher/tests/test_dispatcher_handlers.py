"""The dispatcher's subscribers end to end over FastStream's TestKafkaBroker and in-memory twins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from featurebus.common.events import (
    BatchCancelled,
    BatchPlanned,
    BatchReady,
    BatchTriggered,
    Blob,
    CollectionTarget,
    ComputeProfile,
    IngestedObject,
    ObjectsIngested,
    PluginRef,
)
from featurebus.common.frames import FRAME_COLUMNS, from_parquet
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.dispatcher.batching import ObjectsNotYetStored
from featurebus.dispatcher.config import DispatcherSettings
from featurebus.dispatcher.main import DispatcherService, build
from featurebus.dispatcher.repository import InMemoryObjectRepository

PREFIX = "t-disp."


@dataclass
class Harness:
    service: DispatcherService
    store: MemoryObjectStore
    repository: InMemoryObjectRepository
    ready: list[tuple[BatchReady, bytes | None]] = field(default_factory=list)
    planned: list[BatchPlanned] = field(default_factory=list)
    dead: list[dict[str, str]] = field(default_factory=list)

    async def publish(self, event: ObjectsIngested | BatchTriggered | BatchCancelled) -> None:
        await self.service.bus.publish(event)


@pytest.fixture
async def harness(memory_store: MemoryObjectStore) -> AsyncIterator[Harness]:
    repository = InMemoryObjectRepository()
    service = build(
        DispatcherSettings(topic_prefix=PREFIX, ingest_grace_s=0), repository=repository, store=memory_store
    )
    # The tests stand in for the registry.
    service.bus.publishes("objects.ingested", "batch.triggered", "batch.cancelled")
    h = Harness(service, memory_store, repository)
    broker = service.bus.broker

    @broker.subscriber(PREFIX + "batch.ready")
    async def on_ready(event: BatchReady, message: KafkaMessage) -> None:
        record: Any = message.raw_message  # a ConsumerRecord (a tuple only for batch subscribers)
        h.ready.append((event, record.key))

    @broker.subscriber(PREFIX + "batch.planned")
    async def on_planned(event: BatchPlanned) -> None:
        h.planned.append(event)

    @broker.subscriber(PREFIX + "objects.ingested.dlq")
    async def on_dead(message: KafkaMessage) -> None:
        h.dead.append(message.headers)

    async with TestKafkaBroker(broker):
        yield h


def ingest(*objects: IngestedObject, bucket_id: str = "bkt_1") -> ObjectsIngested:
    return ObjectsIngested(org_id="org_1", namespace_id="ns_1", bucket_id=bucket_id, objects=list(objects))


def text(object_id: str, data: str) -> IngestedObject:
    return IngestedObject(object_id=object_id, blobs=[Blob(blob_id=f"{object_id}_text", property="text", data=data)])


def trigger(batch_size: int = 2, object_ids: list[str] | None = None, bucket_id: str = "bkt_1") -> BatchTriggered:
    plugin = PluginRef(
        plugin_id="text_embed_1_0_0",
        name="text_embed",
        version="1.0.0",
        archive_uri="s3://fb/p.zip",
        archive_sha256="0" * 64,
        compute_profile=ComputeProfile(batch_size=batch_size),
    )
    return BatchTriggered(
        org_id="org_1",
        namespace_id="ns_1",
        bucket_id=bucket_id,
        batch_id="bat_1",
        collections=[CollectionTarget(collection_id="col_1", feature_extractors=[plugin])],
        object_ids=object_ids,
    )


async def test_trigger_writes_frames_and_announces_each_then_the_totals(harness: Harness) -> None:
    await harness.publish(ingest(text("obj_1", "one"), text("obj_2", "two"), text("obj_3", "three")))
    await harness.publish(trigger(batch_size=2))

    assert [e.frame_index for e, _ in harness.ready] == [0, 1]
    # Keyed by frame, so that a batch's frames spread over the partitions and run in parallel.
    assert [key for _, key in harness.ready] == [e.frame_id.encode() for e, _ in harness.ready]
    first = harness.ready[0][0]
    data = harness.store.objects[first.frame_uri]
    assert first.frame_uri == "s3://featurebus/frames/bat_1/col_1/text_embed_1_0_0/00000.parquet"
    assert first.frame_sha256 == sha256_hex(data)
    frame = from_parquet(data)
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame["data"].tolist() == ["one", "two"] and first.row_count == 2
    assert harness.planned[-1].frames_total == 2 and harness.planned[-1].rows_in == 3
    assert harness.planned[-1].error is None


async def test_replayed_trigger_gives_the_same_frames_and_ids(harness: Harness) -> None:
    await harness.publish(ingest(text("obj_1", "one"), text("obj_2", "two"), text("obj_3", "three")))
    event = trigger(batch_size=2)
    await harness.publish(event)
    frames_before = dict(harness.store.objects)
    await harness.publish(event)  # the same message delivered again

    first, second = harness.ready[:2], harness.ready[2:]
    assert [(e.frame_id, e.frame_sha256, e.event_id) for e, _ in first] == [
        (e.frame_id, e.frame_sha256, e.event_id) for e, _ in second
    ]
    assert harness.store.objects == frames_before
    assert harness.planned[0].rows_in == harness.planned[1].rows_in == 3


async def test_replayed_ingest_changes_nothing(harness: Harness) -> None:
    message = ingest(text("obj_1", "one"))
    await harness.publish(message)
    await harness.publish(message)
    stored = await harness.repository.list_objects("bkt_1")
    assert [o.object_id for o in stored] == ["obj_1"]
    assert stored[0].blobs[0].data == "one"


async def test_invalid_objects_are_dead_lettered_after_the_valid_ones_are_stored(harness: Harness) -> None:
    bad = IngestedObject(object_id="obj_bad", blobs=[Blob(blob_id="b1", property="img", type="image")])
    await harness.publish(ingest(text("obj_ok", "fine"), bad))

    assert [o.object_id for o in await harness.repository.list_objects("bkt_1")] == ["obj_ok"]
    assert len(harness.dead) == 1
    error = harness.dead[0]["featurebus-error"]
    assert "InvalidObjectsError" in error and "obj_bad" in error and "needs `uri`" in error


async def test_empty_bucket_is_reported_not_planned(harness: Harness) -> None:
    await harness.publish(trigger())
    assert harness.ready == []
    (planned,) = harness.planned
    assert planned.frames_total == 0 and planned.rows_in == 0
    assert planned.error == "bucket bkt_1 has no objects: add objects before triggering a batch"


async def test_retry_of_failed_documents_plans_only_those_objects(harness: Harness) -> None:
    await harness.publish(ingest(text("obj_1", "one"), text("obj_2", "two"), text("obj_3", "three")))
    await harness.publish(trigger(batch_size=10, object_ids=["obj_3", "obj_1"]))
    frame = from_parquet(harness.store.objects[harness.ready[0][0].frame_uri])
    assert frame["object_id"].tolist() == ["obj_1", "obj_3"]
    assert harness.planned[0].rows_in == 2


async def test_objects_of_another_bucket_are_not_planned(harness: Harness) -> None:
    await harness.publish(ingest(text("obj_1", "one"), bucket_id="bkt_other"))
    await harness.publish(trigger())
    assert harness.planned[0].error is not None and "bkt_1 has no objects" in harness.planned[0].error


async def test_trigger_waits_for_objects_within_the_grace_period(memory_store: MemoryObjectStore) -> None:
    """A trigger that overtakes its objects is retried (transient), not reported as empty."""
    repository = InMemoryObjectRepository()
    service = build(DispatcherSettings(ingest_grace_s=5), repository=repository, store=memory_store)
    now = [100.0]
    service.dispatcher.clock = lambda: now[0]
    event = trigger()
    with pytest.raises(ObjectsNotYetStored, match="waiting up to 5s"):
        await service.dispatcher.plan(event)
    now[0] += 2
    await repository.upsert(
        org_id="o", namespace_id="n", bucket_id="bkt_1", objects=[text("obj_1", "x")], ingested_at=event.occurred_at
    )
    plan = await service.dispatcher.plan(event)  # the redelivery finds the object
    assert plan.planned.rows_in == 1 and plan.planned.error is None
    # Past the grace period, an empty bucket is reported instead of retried forever.
    empty = trigger(bucket_id="bkt_empty")
    with pytest.raises(ObjectsNotYetStored):
        await service.dispatcher.plan(empty)
    now[0] += 6
    assert (await service.dispatcher.plan(empty)).planned.error is not None


async def test_trigger_waits_until_the_expected_objects_are_stored(memory_store: MemoryObjectStore) -> None:
    """Objects and triggers travel on different topics: a trigger that overtakes some of its
    objects waits for them instead of silently processing part of the bucket."""
    from featurebus.dispatcher.batching import Dispatcher

    repository = InMemoryObjectRepository()
    now = [0.0]
    dispatcher = Dispatcher(repository, memory_store, ingest_grace_s=10, clock=lambda: now[0])
    await dispatcher.ingest(ingest(text("o1", "one")))
    first = trigger(batch_size=64).model_copy(update={"expected_objects": 2})
    with pytest.raises(ObjectsNotYetStored, match="lacks 1 object"):
        await dispatcher.plan(first)
    await dispatcher.ingest(ingest(text("o2", "two")))
    plan = await dispatcher.plan(first)
    assert plan.planned.rows_in == 2 and plan.planned.error is None

    # Past the grace period it goes on with what it has, loudly in the log.
    late = trigger(batch_size=64).model_copy(update={"expected_objects": 5})
    with pytest.raises(ObjectsNotYetStored):
        await dispatcher.plan(late)
    now[0] = 11
    plan = await dispatcher.plan(late)
    assert plan.planned.rows_in == 2 and plan.planned.error is None


def cancel(batch_id: str = "bat_1") -> BatchCancelled:
    return BatchCancelled(org_id="org_1", namespace_id="ns_1", batch_id=batch_id, task_id="task_1")


async def test_a_cancelled_batch_is_counted_but_no_frame_is_written_or_announced(harness: Harness) -> None:
    await harness.publish(ingest(text("obj_1", "one"), text("obj_2", "two"), text("obj_3", "three")))
    await harness.publish(cancel())
    await harness.publish(cancel())  # replayed: nothing changes
    assert "bat_1" in harness.service.cancelled and len(harness.service.cancelled) == 1
    objects_before = dict(harness.store.objects)
    await harness.publish(trigger(batch_size=2))
    await harness.publish(trigger(batch_size=2))  # a replayed trigger
    assert harness.ready == [] and harness.store.objects == objects_before
    # The totals still go to the registry, which counts these rows as cancelled.
    assert [(p.frames_total, p.rows_in, p.error) for p in harness.planned] == [(2, 3, None), (2, 3, None)]
    await harness.publish(trigger(batch_size=2).model_copy(update={"batch_id": "bat_2"}))  # not cancelled
    assert [e.batch_id for e, _ in harness.ready] == ["bat_2", "bat_2"]


async def test_a_batch_cancelled_while_its_frames_are_announced_gets_no_more_of_them(harness: Harness) -> None:
    await harness.publish(ingest(*(text(f"obj_{i}", str(i)) for i in range(6))))

    @harness.service.bus.broker.subscriber(PREFIX + "batch.ready", group_id="canceller")
    async def cancel_on_first_frame(event: BatchReady) -> None:
        harness.service.cancelled.add(cancel(event.batch_id))

    async with TestKafkaBroker(harness.service.bus.broker):
        await harness.publish(trigger(batch_size=2))
    assert [e.frame_index for e, _ in harness.ready] == [0]
    assert (harness.planned[-1].frames_total, harness.planned[-1].rows_in) == (3, 6)


async def test_a_restarted_dispatcher_reads_the_cancellations_before_it_consumes() -> None:
    """start() catches up on batch.cancelled from the log before the broker starts (no Kafka here)."""
    calls: list[str] = []

    class Log:
        async def read_log(self, topic: str) -> list[Any]:
            calls.append(topic)
            return [cancel("bat_old"), cancel("bat_old")]

    service = build(DispatcherSettings(), repository=InMemoryObjectRepository(), store=MemoryObjectStore())
    assert await service.cancelled.catch_up(Log()) == 1
    assert calls == ["batch.cancelled"] and "bat_old" in service.cancelled
