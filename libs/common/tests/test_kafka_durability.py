"""Topic replication and producer durability: the settings reach the topics the services create,
and every producer waits for all in-sync replicas (acks=all) with idempotence on."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from pydantic import ValidationError

from featurebus.common import dlq as dlq_module
from featurebus.common.events import BatchPlanned
from featurebus.common.kafka import Bus, producer_durability, topic_configs
from featurebus.common.settings import CommonSettings
from featurebus.common.topics import TOPICS, dlq


def test_replication_defaults_fit_one_broker_and_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = CommonSettings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (1, 1)
    monkeypatch.setenv("FEATUREBUS_TOPIC_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS", "2")
    settings = CommonSettings()
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
    assert topic_configs(settings) == {"min.insync.replicas": "2"}


@pytest.mark.parametrize(
    ("replicas", "in_sync", "message"),
    [(1, 2, "exceeds FEATUREBUS_TOPIC_REPLICATION_FACTOR"), (0, 0, "greater than or equal to 1")],
)
def test_replication_that_no_write_could_satisfy_is_refused(replicas: int, in_sync: int, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CommonSettings(topic_replication_factor=replicas, topic_min_insync_replicas=in_sync)


def test_every_producer_waits_for_all_in_sync_replicas_idempotently(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurebus.common import kafka

    assert producer_durability(CommonSettings()) == {"acks": "all", "enable_idempotence": True}
    assert producer_durability(CommonSettings(kafka_idempotence=False)) == {"acks": "all", "enable_idempotence": False}
    brokers: list[dict[str, Any]] = []
    real_broker = kafka.KafkaBroker

    def recording_broker(*args: Any, **options: Any) -> Any:
        brokers.append(options)
        return real_broker(*args, **options)

    monkeypatch.setattr(kafka, "KafkaBroker", recording_broker)
    Bus(CommonSettings(), client_id="test")
    assert brokers[0]["acks"] == "all" and brokers[0]["enable_idempotence"] is True

    made: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **options: Any) -> None:
            made.append(options)
            raise RuntimeError("recorded")

    monkeypatch.setattr(dlq_module, "AIOKafkaProducer", Recorder)

    async def no_letters(*args: Any) -> tuple[Any, list[Any]]:
        class Consumer:
            async def stop(self) -> None: ...

        return Consumer(), []

    monkeypatch.setattr(dlq_module, "read_dead_letters", no_letters)
    with pytest.raises(RuntimeError, match="recorded"):
        asyncio.run(dlq_module.replay(CommonSettings(), "batch.planned"))
    assert made and made[0]["acks"] == "all"  # a replay is at least once by itself: no idempotence needed


class RecordingAdmin:
    """Stands in for aiokafka's admin client: records the topics asked for."""

    created: list[NewTopic]

    def __init__(self, **_: Any) -> None:
        RecordingAdmin.created = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def list_topics(self) -> list[str]:
        return ["batch.ready"]  # exists already: left alone

    async def create_topics(self, topics: list[NewTopic]) -> None:
        RecordingAdmin.created.extend(topics)


async def test_ensure_topics_asks_for_the_configured_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    from featurebus.common import kafka

    monkeypatch.setattr(kafka, "AIOKafkaAdminClient", RecordingAdmin)
    settings = CommonSettings(topic_partitions=6, topic_replication_factor=3, topic_min_insync_replicas=2)
    await Bus(settings, client_id="test").ensure_topics()
    created = {t.name: t for t in RecordingAdmin.created}
    assert set(created) == {*TOPICS, *(dlq(t) for t in TOPICS)} - {"batch.ready"}
    for name, topic in created.items():
        assert (topic.num_partitions, topic.replication_factor) == (6, 3), name
        expected = {"min.insync.replicas": "2", **({"retention.ms": "-1"} if name.endswith(".dlq") else {})}
        assert topic.topic_configs == expected, name


@pytest.mark.integration
async def test_topics_on_a_real_broker_get_the_configured_settings_and_take_idempotent_writes(
    local_stack: Any,
) -> None:
    """On the test stack's broker (Tansu, or apache/kafka with FEATUREBUS_TEST_STACK=containers):
    one broker, so replication 1 and min.insync.replicas 1; an acks=all publish lands (idempotent
    on apache/kafka; Tansu has no idempotent producers, which the local stack's settings say)."""
    env = local_stack.env()
    settings = CommonSettings(
        kafka_bootstrap=env["FEATUREBUS_KAFKA_BOOTSTRAP"],
        kafka_idempotence=env["FEATUREBUS_KAFKA_IDEMPOTENCE"] == "true",
        topic_prefix=f"dur{uuid.uuid4().hex[:6]}.",
    )
    bus = Bus(settings, client_id="test")
    await bus.ensure_topics()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = set(await admin.list_topics())
        assert {bus.topic(t) for t in TOPICS} | {dlq(bus.topic(t)) for t in TOPICS} <= names
    finally:
        await admin.close()

    bus.publishes("batch.planned")
    await bus.broker.start()
    try:
        await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=1, rows_in=1), key="b1")
    finally:
        await bus.broker.stop()
    consumer = AIOKafkaConsumer(
        bus.topic("batch.planned"), bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=10_000)
    finally:
        await consumer.stop()
    records = [r for rs in batch.values() for r in rs]
    assert [BatchPlanned.model_validate_json(r.value).batch_id for r in records] == ["b1"]
