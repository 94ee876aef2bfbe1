"""Kafka wiring shared by every service: one :class:`Bus` per process.

Delivery (DESIGN.md §1): offsets are committed only after the handler returned, i.e. after its
side effects are durable (``AckPolicy.NACK_ON_ERROR``). A handler that fails on a *transient*
error (a server down, a timeout) is retried with back-off by seeking back to the message; any
other failure — including a payload that does not parse — sends the raw message and the error
to ``<topic>.dlq`` and moves on, so a poison message never blocks a partition and is never lost.

Every topic a service publishes is declared (:meth:`Bus.publishes`) where its handlers are
registered, with the topic's payload model, so that FastStream describes each service's
producers and consumers (``docs/asyncapi.yaml``, written by ``make docs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as LogPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream._internal.middlewares import BaseMiddleware
from faststream.kafka import KafkaBroker, TopicPartition
from faststream.kafka.publisher import DefaultPublisher

from featurebus.common.events import Event
from featurebus.common.settings import CommonSettings
from featurebus.common.telemetry import inject_trace
from featurebus.common.topics import TOPICS, dlq, topic_of

__all__ = ["TRANSIENT_ERRORS", "Bus", "TransientError", "producer_durability", "topic_configs"]

log = logging.getLogger("featurebus.kafka")


class TransientError(Exception):
    """Raise from a handler to have the message retried later instead of dead-lettered.

    ``retry_after`` (seconds) replaces the exponential back-off, for a condition that is known to
    clear soon (e.g. another consumer of the same service catching up).
    """

    retry_after: float | None = None


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
)

_MAX_BACKOFF_S = 30.0


def producer_durability(settings: CommonSettings) -> dict[str, Any]:
    """The options of every producer of featurebus (the Bus's, the DLQ replay's): a write is
    acknowledged only once every in-sync replica has it (at least FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS
    of them), and with FEATUREBUS_KAFKA_IDEMPOTENCE (the default) a retry after a lost
    acknowledgement cannot duplicate it. Without idempotence aiokafka still keeps one request in
    flight per broker, so a retry never reorders a partition; a duplicate is possible, and harmless
    to featurebus' idempotent handlers."""
    return {"acks": "all", "enable_idempotence": settings.kafka_idempotence}


def topic_configs(settings: CommonSettings) -> dict[str, str]:
    """The per-topic configuration a topic created by featurebus gets (besides a DLQ's retention)."""
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}


class Bus:
    """A FastStream ``KafkaBroker`` plus the topic prefix, the DLQ policy and typed publishing."""

    def __init__(
        self,
        settings: CommonSettings,
        client_id: str,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.prefix = settings.topic_prefix
        self.transient = TRANSIENT_ERRORS + transient
        self._attempts: dict[tuple[str, int, int], int] = {}
        self._publishers: dict[str, DefaultPublisher] = {}
        self._subscribed: list[str] = []
        self._groups: list[tuple[str, str]] = []
        self.broker = KafkaBroker(
            settings.kafka_bootstrap,
            client_id=f"featurebus-{client_id}",
            middlewares=[self._dead_letter_middleware()],
            logger=logging.getLogger(f"featurebus.{client_id}.broker"),
            **producer_durability(settings),
        )

    def topic(self, name: str) -> str:
        return self.prefix + name

    def subscriber(self, topic: str, group: str, **options: Any) -> Callable[..., Any]:
        """A consumer-group subscriber on a featurebus topic, committing after the handler."""
        _known(topic)
        self._subscribed.append(topic)
        self._groups.append((topic, group))
        options.setdefault("auto_offset_reset", "earliest")
        return self.broker.subscriber(  # type: ignore[no-any-return]
            self.topic(topic),
            group_id=self.prefix + group,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=f"{self.client_id} consumes {topic}",
            **options,
        )

    def broadcast_subscriber(self, topic: str, *, from_beginning: bool = False) -> Callable[..., Any]:
        """A subscriber that reads every partition of ``topic`` from now on, in every process.

        No consumer group and nothing to commit: for answers that only the process waiting for
        them can use. ``from_beginning`` reads the retained log first, on every start: for facts
        every process must know, such as cancelled batches (``batch.cancelled``).
        """
        _known(topic)
        self._subscribed.append(topic)
        return self.broker.subscriber(
            partitions=[TopicPartition(self.topic(topic), p) for p in range(self.settings.topic_partitions)],
            auto_offset_reset="earliest" if from_beginning else "latest",
            title=f"{self.client_id} consumes {topic} (every process, every partition)",
        )

    async def read_log(self, topic: str, idle_timeout_s: float = 30.0) -> list[Event]:
        """Every retained event of ``topic``, from the beginning up to its end as of this call.

        For a service's start, before it consumes anything else (e.g. the cancelled batches it
        must honour). A message that does not parse is skipped with a warning: the broadcast
        subscriber of the same topic dead-letters it. TimeoutError when no partition advances
        for ``idle_timeout_s``.
        """
        model = _known(topic)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            client_id=f"featurebus-{self.client_id}-log",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            parts = [LogPartition(self.topic(topic), p) for p in range(self.settings.topic_partitions)]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            events: list[Event] = []
            pending = [tp for tp in parts if await consumer.position(tp) < ends[tp]]
            while pending:
                fetched = await consumer.getmany(*pending, timeout_ms=int(idle_timeout_s * 1000))
                if not fetched:
                    raise TimeoutError(f"reading {self.topic(topic)}: no progress for {idle_timeout_s:.0f}s")
                for tp, records in fetched.items():
                    for record in records:
                        if record.offset >= ends[tp] or record.value is None:
                            continue
                        try:
                            events.append(model.model_validate_json(record.value))
                        except ValueError as exc:
                            log.warning("skipping %s[%d]@%d: %s", tp.topic, tp.partition, record.offset, exc)
                pending = [tp for tp in pending if await consumer.position(tp) < ends[tp]]
            return events
        finally:
            await consumer.stop()

    def publishes(self, *topics: str) -> None:
        """Declare the topics this service publishes; :meth:`publish` refuses any other."""
        for topic in topics:
            model = _known(topic)
            if topic not in self._publishers:
                self._publishers[topic] = self.broker.publisher(
                    self.topic(topic),
                    title=f"{self.client_id} publishes {topic}",
                    description=(model.__doc__ or "").strip() or None,
                    schema=model,
                )

    def declared_topics(self) -> list[str]:
        """The topics this service publishes, as declared."""
        return list(self._publishers)

    def subscribed_topics(self) -> list[str]:
        """The topics this service consumes."""
        return list(dict.fromkeys(self._subscribed))

    def consumer_groups(self) -> list[tuple[str, str]]:
        """(topic, consumer group) of each group subscriber, without the topic prefix."""
        return list(dict.fromkeys(self._groups))

    async def publish(self, event: Event, key: str | None = None) -> None:
        """Publish an event on its topic (from the topic table), with the current trace context."""
        topic = topic_of(event)
        publisher = self._publishers.get(topic)
        if publisher is None:
            raise KeyError(
                f"the {self.client_id} service publishes {topic} without declaring it: "
                f"add bus.publishes({topic!r}) where its handlers are registered"
            )
        if not event.trace:
            event.trace = inject_trace()
        # pydantic's own JSON (NaN and infinity as null), not FastStream's json.dumps of it
        await publisher.publish(
            event.model_dump_json().encode(),
            key=key.encode() if key else None,
            headers={"content-type": "application/json", "featurebus-event": type(event).__name__},
        )

    async def ensure_topics(self) -> None:
        """Create every topic of the table and its DLQ (a no-op for those that exist), with
        FEATUREBUS_TOPIC_PARTITIONS partitions, FEATUREBUS_TOPIC_REPLICATION_FACTOR replicas and
        min.insync.replicas FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS; a DLQ keeps its messages until
        they are replayed or deleted (as deploy/compose and deploy/k8s create them)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            configs = topic_configs(self.settings)
            wanted = [(self.topic(t), configs) for t in TOPICS]
            wanted += [(dlq(self.topic(t)), {**configs, "retention.ms": "-1"}) for t in TOPICS]
            new = [
                NewTopic(
                    name,
                    num_partitions=self.settings.topic_partitions,
                    replication_factor=self.settings.topic_replication_factor,
                    topic_configs=config,
                )
                for name, config in wanted
                if name not in existing
            ]
            if new:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(new)
        finally:
            await admin.close()

    def _dead_letter_middleware(self) -> type[BaseMiddleware]:
        bus = self

        class DeadLetter(BaseMiddleware):
            async def consume_scope(self, call_next: Any, msg: Any) -> Any:
                record = msg.raw_message
                where = (record.topic, record.partition, record.offset)
                try:
                    result = await call_next(msg)
                except bus.transient as exc:
                    attempt = bus._attempts.get(where, 0) + 1
                    bus._attempts[where] = attempt
                    delay = getattr(exc, "retry_after", None) or min(_MAX_BACKOFF_S, 0.5 * 2**attempt)
                    log.warning(
                        "transient failure on %s[%d]@%d (attempt %d, retrying in %.1fs): %r",
                        *where,
                        attempt,
                        delay,
                        exc,
                    )
                    await asyncio.sleep(delay)
                    raise
                except Exception as exc:
                    bus._attempts.pop(where, None)
                    await bus._dead_letter(record, exc)
                    return None
                bus._attempts.pop(where, None)
                return result

        return DeadLetter

    async def _dead_letter(self, record: Any, exc: BaseException) -> None:
        log.error(
            "dead-lettering %s[%d]@%d to %s: %s: %s",
            record.topic,
            record.partition,
            record.offset,
            dlq(record.topic),
            type(exc).__name__,
            exc,
        )
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or [])}
        headers.update(
            {
                "featurebus-error": f"{type(exc).__name__}: {exc}"[:4000],
                "featurebus-source-topic": record.topic,
                "featurebus-source-offset": f"{record.partition}:{record.offset}",
            }
        )
        await self.broker.publish(record.value, topic=dlq(record.topic), key=record.key, headers=headers)


def _known(topic: str) -> type[Event]:
    if topic not in TOPICS:
        raise KeyError(f"unknown topic {topic!r}: add it to featurebus.common.topics.TOPICS")
    return TOPICS[topic]
