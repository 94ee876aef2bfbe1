"""Dead letters on a real Kafka broker: listed with their error, replayed once to their topic."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from featurebus.common.dlq import read_dead_letters, replay
from featurebus.common.kafka import Bus
from featurebus.common.settings import CommonSettings

pytestmark = pytest.mark.integration


async def test_replay_republishes_dead_letters_once_without_their_error_headers(local_stack) -> None:  # type: ignore[no-untyped-def]
    env = local_stack.env()
    settings = CommonSettings(
        kafka_bootstrap=env["FEATUREBUS_KAFKA_BOOTSTRAP"],
        kafka_idempotence=env["FEATUREBUS_KAFKA_IDEMPOTENCE"] == "true",
        topic_prefix=f"dlq{uuid.uuid4().hex[:6]}.",
    )
    await Bus(settings, client_id="test").ensure_topics()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic_prefix + "batch.planned.dlq",
            b'{"batch_id": "b1"}',
            headers=[
                ("featurebus-error", b"ValidationError: namespace_id missing"),
                ("content-type", b"application/json"),
            ],
        )
    finally:
        await producer.stop()

    consumer, letters = await read_dead_letters(settings, "batch.planned", None)
    await consumer.stop()
    assert [(letter.value, letter.error) for letter in letters] == [
        (b'{"batch_id": "b1"}', "ValidationError: namespace_id missing")
    ]

    assert await replay(settings, "batch.planned") == 1
    assert await replay(settings, "batch.planned") == 0  # the group remembers what was replayed

    target = AIOKafkaConsumer(
        settings.topic_prefix + "batch.planned",
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await target.start()
    try:
        batch = await target.getmany(timeout_ms=10_000)
    finally:
        await target.stop()
    records = [r for rs in batch.values() for r in rs]
    assert [r.value for r in records] == [b'{"batch_id": "b1"}']
    assert dict(records[0].headers) == {"content-type": b"application/json"}
