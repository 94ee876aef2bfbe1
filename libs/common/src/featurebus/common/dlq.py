"""Inspect and replay dead-lettered messages.

    python -m featurebus.common.dlq show batch.ready
    python -m featurebus.common.dlq replay batch.ready

``replay`` republishes every message waiting in ``<topic>.dlq`` to ``<topic>`` (headers naming the
error are dropped) and commits its progress in the consumer group ``featurebus-dlq-replay``, so a
message is replayed once; it stops when it has caught up with the end of the DLQ as it was at start.
Handlers are idempotent, so replaying a message that already succeeded changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from featurebus.common.settings import CommonSettings
from featurebus.common.topics import TOPICS, dlq

__all__ = ["DeadLetter", "read_dead_letters", "replay"]

app = typer.Typer(help="Inspect and replay messages in featurebus dead-letter topics.", no_args_is_help=True)
_ERROR_HEADERS = ("featurebus-error", "featurebus-source-topic", "featurebus-source-offset")
_GROUP = "featurebus-dlq-replay"


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def error(self) -> str:
        return self.headers.get("featurebus-error", "")


async def read_dead_letters(
    settings: CommonSettings, topic: str, group: str | None
) -> tuple[AIOKafkaConsumer, list[DeadLetter]]:
    """Everything in ``<topic>.dlq`` up to its current end (from the group's position if given)."""
    name = dlq(settings.topic_prefix + topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=(settings.topic_prefix + group) if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    partitions = [TopicPartition(name, p) for p in (consumer.partitions_for_topic(name) or set())]
    if not partitions:
        await consumer.stop()
        return consumer, []
    consumer.assign(partitions)
    if group is None:
        await consumer.seek_to_beginning(*partitions)
    ends = await consumer.end_offsets(partitions)
    letters: list[DeadLetter] = []

    async def behind() -> bool:
        return any([await consumer.position(tp) < ends[tp] for tp in partitions])

    while await behind():
        batch = await consumer.getmany(timeout_ms=1000)
        for tp, records in batch.items():
            for r in records:
                if r.offset < ends[tp]:
                    headers = {k: v.decode(errors="replace") for k, v in (r.headers or [])}
                    letters.append(DeadLetter(tp.partition, r.offset, r.key, r.value, headers))
    return consumer, letters


async def replay(settings: CommonSettings, topic: str) -> int:
    """Republish ``<topic>.dlq`` to ``<topic>``; returns how many messages were replayed."""
    consumer, letters = await read_dead_letters(settings, topic, _GROUP)
    # acks=all: a replayed message is on every in-sync replica before the DLQ's offsets move on.
    # No idempotent producer: a replay is at least once by itself (a replay stopped between its
    # sends and its commit sends them all again), which the services' idempotent handlers absorb.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for letter in letters:
            headers = [(k, v.encode()) for k, v in letter.headers.items() if k not in _ERROR_HEADERS]
            await producer.send_and_wait(settings.topic_prefix + topic, letter.value, key=letter.key, headers=headers)
        if letters:
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return len(letters)


def _check(topic: str) -> None:
    if topic not in TOPICS:
        raise typer.BadParameter(f"unknown topic {topic!r}; topics: {', '.join(TOPICS)}", param_hint="TOPIC")


@app.command()
def show(topic: str) -> None:
    """Print the dead letters of TOPIC with their errors."""
    _check(topic)

    async def run() -> list[DeadLetter]:
        consumer, letters = await read_dead_letters(CommonSettings(), topic, None)
        await consumer.stop()
        return letters

    letters = asyncio.run(run())
    for letter in letters:
        typer.echo(f"{letter.partition}:{letter.offset} {letter.error}\n  {letter.value[:300]!r}")
    typer.echo(f"{len(letters)} dead letter(s) in {dlq(topic)}")


@app.command("replay")
def replay_command(topic: str) -> None:
    """Republish the dead letters of TOPIC to TOPIC."""
    _check(topic)
    count = asyncio.run(replay(CommonSettings(), topic))
    typer.echo(f"replayed {count} message(s) from {dlq(topic)} to {topic}")


if __name__ == "__main__":
    app()
