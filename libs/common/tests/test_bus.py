"""The Bus's delivery policy: poison goes to the DLQ with its error; transient errors are retried."""

from __future__ import annotations

import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from featurebus.common.events import BatchPlanned
from featurebus.common.kafka import Bus, TransientError
from featurebus.common.settings import CommonSettings


def _bus() -> Bus:
    bus = Bus(CommonSettings(topic_prefix="t1."), client_id="test")
    bus.publishes("batch.planned")
    return bus


async def test_publish_uses_the_topic_table_and_prefix() -> None:
    bus = _bus()
    seen: list[BatchPlanned] = []

    @bus.subscriber("batch.planned", group="g")
    async def on_batch_planned(event: BatchPlanned) -> None:
        seen.append(event)

    async with TestKafkaBroker(bus.broker):
        await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=3))
    assert [e.batch_id for e in seen] == ["b1"]
    assert seen[0].trace is not None


async def test_poison_message_goes_to_dlq_with_the_error() -> None:
    bus = _bus()
    dead: list[tuple[bytes, dict[str, str]]] = []

    @bus.subscriber("batch.planned", group="g")
    async def on_batch_planned(event: BatchPlanned) -> None:
        raise AssertionError("should not be called for an invalid payload")

    @bus.broker.subscriber("t1.batch.planned.dlq")
    async def on_dead(message: KafkaMessage) -> None:
        dead.append((message.body, message.headers))

    async with TestKafkaBroker(bus.broker) as br:
        await br.publish(b'{"batch_id": 1}', topic="t1.batch.planned")
    assert len(dead) == 1
    body, headers = dead[0]
    assert body == b'{"batch_id": 1}'
    assert "namespace_id" in headers["featurebus-error"]  # names the missing field
    assert headers["featurebus-source-topic"] == "t1.batch.planned"


async def test_handler_exception_is_dead_lettered_not_swallowed() -> None:
    bus = _bus()
    dead: list[dict[str, str]] = []

    @bus.subscriber("batch.planned", group="g")
    async def on_batch_planned(event: BatchPlanned) -> None:
        raise ValueError("frame count is negative")

    @bus.broker.subscriber("t1.batch.planned.dlq")
    async def on_dead(message: KafkaMessage) -> None:
        dead.append(message.headers)

    async with TestKafkaBroker(bus.broker):
        await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=3))
    assert dead and "ValueError: frame count is negative" in dead[0]["featurebus-error"]


async def test_transient_error_is_raised_for_redelivery_not_dead_lettered(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = _bus()
    dead: list[object] = []
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr("featurebus.common.kafka.asyncio.sleep", fake_sleep)

    @bus.subscriber("batch.planned", group="g")
    async def on_batch_planned(event: BatchPlanned) -> None:
        raise TransientError("mongo is down")

    @bus.broker.subscriber("t1.batch.planned.dlq")
    async def on_dead(message: KafkaMessage) -> None:
        dead.append(message.body)

    async with TestKafkaBroker(bus.broker):
        with pytest.raises(TransientError):
            await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=3))
    assert dead == []
    assert sleeps and sleeps[0] > 0


async def test_a_transient_error_may_say_when_to_retry_instead_of_backing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    bus = _bus()
    sleeps: list[float] = []

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    monkeypatch.setattr("featurebus.common.kafka.asyncio.sleep", fake_sleep)

    class CatchingUp(TransientError):
        retry_after = 0.25

    @bus.subscriber("batch.planned", group="g")
    async def on_batch_planned(event: BatchPlanned) -> None:
        raise CatchingUp("the ingest consumer is behind")

    async with TestKafkaBroker(bus.broker):
        for _ in range(3):  # the same message, redelivered: no exponential growth
            with pytest.raises(CatchingUp):
                await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=3))
    assert sleeps == [0.25, 0.25, 0.25]


async def test_a_topic_the_service_did_not_declare_is_refused_by_name() -> None:
    bus = Bus(CommonSettings(topic_prefix="t1."), client_id="scanner")
    bus.publishes("plugin.scanned")
    async with TestKafkaBroker(bus.broker):
        with pytest.raises(KeyError, match=r"scanner service publishes batch\.planned without declaring it"):
            await bus.publish(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=3))
    with pytest.raises(KeyError, match=r"unknown topic 'batch\.plan'"):
        bus.publishes("batch.plan")
