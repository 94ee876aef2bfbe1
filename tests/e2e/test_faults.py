"""Faults in the middle of a batch lose nothing and duplicate nothing.

Restarts (graceful and SIGKILL), a second inference process in the same consumer group that
takes part of the work and then dies, and a replay of ``vectors.produced``: every time, each
document is indexed exactly once and the batch's counts reconcile.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ._client import Api, small_frames_plugin
from ._retrieve import all_document_ids

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 400
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"


@dataclass
class Corpus:
    """A namespace with the plugin deployed, a bucket of ``rows`` notes and a collection over it."""

    api: Api
    ns: str
    bucket: str
    collection: str
    rows: int

    @classmethod
    def create(cls, api: Api, name: str, rows: int = ROWS) -> Corpus:
        ns = api.namespace(f"{name}-{uuid.uuid4().hex[:6]}")
        api.deploy_batch_plugin(ns, "text_embed", "1.0.0", small_frames_plugin())
        texts = [f"Maintenance note {i}: replaced filter {i * 7} in unit {i % 13}." for i in range(rows)]
        bucket = api.text_bucket(ns, "notes", texts)
        collection = api.call(
            "POST",
            f"/v1/namespaces/{ns}/collections",
            json={
                "name": "notes",
                "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
                "source": {"type": "bucket", "bucket_ids": [bucket]},
            },
        )["collection_id"]
        return cls(api, ns, bucket, collection, rows)

    def trigger(self) -> str:
        path = f"/v1/namespaces/{self.ns}/buckets/{self.bucket}/batches/trigger"
        return str(self.api.call("POST", path, json={"collection_ids": [self.collection]})["batch_id"])

    def status(self, batch_id: str) -> dict:  # type: ignore[type-arg]
        return self.api.call("GET", f"/v1/namespaces/{self.ns}/buckets/{self.bucket}/batches/{batch_id}")  # type: ignore[no-any-return]

    def wait_frames(self, batch_id: str, frames: int) -> dict:  # type: ignore[type-arg]
        return Api.wait(lambda: self.status(batch_id), lambda b: b.get("frames_done", 0) >= frames, 180, every=0.1)

    def assert_indexed_exactly_once(self, batch_id: str) -> None:
        done = self.api.wait_batch(self.ns, self.bucket, batch_id, timeout=300)
        assert done["status"] == "COMPLETED", done
        assert done["rows_in"] == done["rows_written"] == self.rows
        assert done["rows_failed"] == 0
        ids = all_document_ids(self.api, self.ns, self.collection, FEATURE_URI, "replaced filter")
        assert len(ids) == len(set(ids)) == self.rows


def frames_logged(log: str, batch_id: str) -> int:
    """How many frames of ``batch_id`` an inference process reports having run."""
    return len(re.findall(rf"batch={batch_id} frame=\S+ plugin=\S+ rows_in=", log))


@pytest.mark.parametrize(("service", "hard"), [("indexer", False), ("inference", False), ("inference", True)])
def test_restart_mid_batch_loses_and_duplicates_nothing(platform, api: Api, service: str, hard: bool) -> None:  # type: ignore[no-untyped-def]
    corpus = Corpus.create(api, f"faults-{service}")
    batch_id = corpus.trigger()
    started = corpus.wait_frames(batch_id, 2)
    assert started["status"] == "IN_PROGRESS", started
    platform.services.restart(service, hard=hard)  # hard: SIGKILL, as a crash or an OOM kill
    corpus.assert_indexed_exactly_once(batch_id)


def test_two_inference_processes_share_a_batch_and_one_carries_on_alone(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    services = platform.services
    replica = services.start_replica("inference")
    try:
        warm = Corpus.create(api, "replicas-warm", rows=64)
        # The replica joins the consumer group within seconds; until then the first process takes
        # every frame. Re-run a small batch until both processes have run frames of one batch.
        shared = False
        for _ in range(12):
            batch_id = warm.trigger()
            warm.assert_indexed_exactly_once(batch_id)
            if frames_logged(services.log("inference"), batch_id) and frames_logged(services.log(replica), batch_id):
                shared = True
                break
        assert shared, "the second inference process never took a frame: " + services.log(replica)[-2000:]

        corpus = Corpus.create(api, "replicas-kill")
        batch_id = corpus.trigger()
        corpus.wait_frames(batch_id, 2)
        assert services.kill(replica)  # SIGKILL: its frames in hand are never committed
        corpus.assert_indexed_exactly_once(batch_id)
        assert frames_logged(services.log("inference"), batch_id) > 0
    finally:
        services.kill(replica)


def test_replaying_vectors_produced_indexes_nothing_twice(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    corpus = Corpus.create(api, "replay", rows=64)
    batch_id = corpus.trigger()
    corpus.assert_indexed_exactly_once(batch_id)
    before = corpus.status(batch_id)

    replayed = asyncio.run(replay_batch(platform.kafka_bootstrap, platform.topic("vectors.produced"), batch_id))
    assert replayed == before["frames_total"] >= 8
    asyncio.run(
        wait_consumed(platform.kafka_bootstrap, platform.topic("vectors.produced"), platform.prefix + "indexer-vectors")
    )

    corpus.assert_indexed_exactly_once(batch_id)
    after = corpus.status(batch_id)
    counts = ("status", "rows_in", "rows_embedded", "rows_written", "rows_failed", "frames_done")
    assert {k: after[k] for k in counts} == {k: before[k] for k in counts}


async def replay_batch(bootstrap: str, topic: str, batch_id: str) -> int:
    """Publish every message of ``topic`` that belongs to ``batch_id`` again, as a replay would."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        sent = 0
        for tp in partitions:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if f'"batch_id":"{batch_id}"'.encode() in record.value:
                        await producer.send_and_wait(topic, record.value, key=record.key, headers=list(record.headers))
                        sent += 1
        return sent
    finally:
        await consumer.stop()
        await producer.stop()


async def wait_consumed(bootstrap: str, topic: str, group: str, timeout: float = 60) -> None:
    """Wait until ``group`` has committed every message of ``topic`` (the replay was handled)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            committed = {tp: await consumer.committed(tp) or 0 for tp in partitions}
            if all(committed[tp] >= ends[tp] for tp in partitions):
                return
            assert asyncio.get_running_loop().time() < deadline, f"{group} still behind: {committed} < {ends}"
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        await consumer.topics()  # refreshes the metadata
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await asyncio.sleep(0.1)
    raise AssertionError(f"topic {topic} has no partitions")
