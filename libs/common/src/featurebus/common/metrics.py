"""Prometheus series shared by the services, and the ways a service serves them.

Every service process keeps its series in prometheus_client's default registry and serves them
as ``GET /metrics``: the registry on its REST port, inference and the indexer on their internal
API's port (:class:`MetricsEndpoint`, no token needed), the dispatcher and the scanner on
``FEATUREBUS_METRICS_HOST:FEATUREBUS_METRICS_PORT`` when a port is set (:func:`serve_standalone`).
Labels never carry tenant data (no namespace, collection or plugin ids).

Counters (``rate()`` gives per second):

- ``featurebus_frames_processed_total{service}``, ``featurebus_rows_processed_total{service}``:
  frames a stage finished and the rows in them (dispatcher: planned; inference: run; indexer:
  indexed); ``featurebus_rows_written_total`` the rows the indexer wrote to Qdrant.
- ``featurebus_rows_failed_total{service,reason}``: rows that failed at that stage, by reason code.

Gauges, read from Kafka every ``FEATUREBUS_METRICS_KAFKA_INTERVAL_S`` by :class:`KafkaGauges`:
``featurebus_consumer_lag_messages{topic,group}`` (end offsets minus the group's committed
offsets) and ``featurebus_dlq_messages{topic}`` (messages retained in ``<topic>.dlq``), for the
topics the process consumes.

Histogram ``featurebus_http_request_duration_seconds{service,method,route,status}`` of every
HTTP request served (see :mod:`featurebus.common.http_observing`): a retriever execution, an
embed and a search are its routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app, start_http_server

from featurebus.common.events import RowFailure
from featurebus.common.topics import dlq

if TYPE_CHECKING:
    from featurebus.common.kafka import Bus

__all__ = [
    "CONSUMER_LAG",
    "DLQ_DEPTH",
    "FRAMES_PROCESSED",
    "HTTP_DURATION",
    "ROWS_FAILED",
    "ROWS_PROCESSED",
    "ROWS_WRITTEN",
    "AioKafkaOffsets",
    "KafkaGauges",
    "KafkaOffsets",
    "MetricsEndpoint",
    "Partition",
    "ProcessMetrics",
    "count_frame",
    "kafka_gauges",
    "new_failures",
    "serve_standalone",
]

log = logging.getLogger("featurebus.metrics")

FRAMES_PROCESSED = Counter("featurebus_frames_processed", "Frames a stage finished.", ["service"])
ROWS_PROCESSED = Counter("featurebus_rows_processed", "Rows in the frames a stage finished.", ["service"])
ROWS_WRITTEN = Counter("featurebus_rows_written", "Rows whose vectors the indexer wrote to Qdrant.", ["service"])
ROWS_FAILED = Counter("featurebus_rows_failed", "Rows that failed at a stage, by reason code.", ["service", "reason"])
CONSUMER_LAG = Gauge(
    "featurebus_consumer_lag_messages",
    "Messages of a topic not yet committed by a consumer group (end offsets minus committed offsets).",
    ["topic", "group"],
)
DLQ_DEPTH = Gauge("featurebus_dlq_messages", "Messages retained in a topic's dead-letter queue.", ["topic"])
# Queries are tens of milliseconds to seconds; frames do not go over HTTP.
HTTP_DURATION = Histogram(
    "featurebus_http_request_duration_seconds",
    "Time to answer one HTTP request, by route template.",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def count_frame(
    service: str, rows: int, failures: Iterable[RowFailure] = (), written: int | None = None, frames: int = 1
) -> None:
    """Count ``frames`` finished by ``service`` with ``rows`` rows, the rows that failed there, and those written."""
    FRAMES_PROCESSED.labels(service).inc(frames)
    ROWS_PROCESSED.labels(service).inc(rows)
    if written is not None:
        ROWS_WRITTEN.labels(service).inc(written)
    for reason, n in Tally(f.reason.value for f in failures).items():
        ROWS_FAILED.labels(service, reason).inc(n)


def new_failures(before: Sequence[RowFailure], after: Sequence[RowFailure]) -> list[RowFailure]:
    """The failures of ``after`` that ``before`` did not carry yet (each stage counts only its own)."""
    carried = Tally((f.document_id, f.reason) for f in before)
    fresh = []
    for failure in after:
        key = (failure.document_id, failure.reason)
        if carried[key]:
            carried[key] -= 1
        else:
            fresh.append(failure)
    return fresh


# ------------------------------------------------------------------------------------ serving


ASGIApp = Any


class MetricsEndpoint:
    """ASGI middleware: ``GET /metrics`` answers with the exposition of ``registry``, the rest goes to ``app``."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry = REGISTRY) -> None:
        self.app = app
        self._metrics = make_asgi_app(registry)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == "/metrics" and scope.get("method") in ("GET", "HEAD"):
            await self._metrics(scope, receive, send)
            return
        await self.app(scope, receive, send)


def serve_standalone(host: str, port: int | None) -> Any | None:
    """prometheus_client's own HTTP server on ``host:port`` (a thread), or None when no port is set.

    Returns the server; ``shutdown()`` stops it.
    """
    if port is None:
        return None
    try:
        server, _thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise RuntimeError(
            f"/metrics cannot listen on {host}:{port}: {exc} (set FEATUREBUS_METRICS_HOST / FEATUREBUS_METRICS_PORT)"
        ) from exc
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server


# ------------------------------------------------------------------------------------ Kafka gauges


@dataclass(frozen=True)
class Partition:
    topic: str
    partition: int


class KafkaOffsets(Protocol):
    """What :class:`KafkaGauges` reads from Kafka (:class:`AioKafkaOffsets`; a dict-backed twin in tests)."""

    async def beginning(self, partitions: Sequence[Partition]) -> dict[Partition, int]: ...

    async def end(self, partitions: Sequence[Partition]) -> dict[Partition, int]: ...

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The group's committed offset of each partition; -1 (or missing) where it committed none."""
        ...

    async def close(self) -> None: ...


class AioKafkaOffsets:
    """:class:`KafkaOffsets` with one aiokafka consumer (no group) and one admin client."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.bootstrap, self.client_id = bootstrap, f"{client_id}-metrics"
        self._clients: tuple[Any, Any] | None = None  # made on first use: aiokafka needs the running loop

    async def _started(self) -> tuple[Any, Any]:
        if self._clients is None:
            from aiokafka import AIOKafkaConsumer
            from aiokafka.admin import AIOKafkaAdminClient

            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, client_id=self.client_id, enable_auto_commit=False
            )
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
            await consumer.start()
            try:
                await admin.start()
            except BaseException:
                await consumer.stop()
                raise
            self._clients = (consumer, admin)
        return self._clients

    async def beginning(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        consumer, _ = await self._started()
        offsets = await consumer.beginning_offsets([_tp(p) for p in partitions])
        return {Partition(tp.topic, tp.partition): int(o) for tp, o in offsets.items()}

    async def end(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        consumer, _ = await self._started()
        offsets = await consumer.end_offsets([_tp(p) for p in partitions])
        return {Partition(tp.topic, tp.partition): int(o) for tp, o in offsets.items()}

    async def committed(self, group: str, partitions: Sequence[Partition]) -> dict[Partition, int]:
        _, admin = await self._started()
        answer = await admin.list_consumer_group_offsets(group, partitions=[_tp(p) for p in partitions])
        return {Partition(tp.topic, tp.partition): int(meta.offset) for tp, meta in answer.items()}

    async def close(self) -> None:
        if self._clients is not None:
            consumer, admin = self._clients
            self._clients = None
            await consumer.stop()
            await admin.close()


def _tp(p: Partition) -> Any:
    from aiokafka import TopicPartition

    return TopicPartition(p.topic, p.partition)


class KafkaGauges:
    """Consumer lag and DLQ depth of the topics one process consumes, refreshed every ``interval_s``.

    ``groups`` are (topic, consumer group) pairs and ``dlq_of`` the topics whose DLQ to measure,
    by their names in the topic table; ``prefix`` is the installation's topic prefix (not in the
    labels). A refresh that fails is logged and tried again at the next interval.
    """

    def __init__(
        self,
        offsets: KafkaOffsets,
        groups: Sequence[tuple[str, str]],
        dlq_of: Sequence[str],
        partitions: int,
        prefix: str = "",
        interval_s: float = 15.0,
    ) -> None:
        self.offsets, self.groups, self.dlq_of = offsets, list(dict.fromkeys(groups)), list(dict.fromkeys(dlq_of))
        self.partitions, self.prefix, self.interval_s = partitions, prefix, interval_s
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def _parts(self, topic: str) -> list[Partition]:
        return [Partition(topic, p) for p in range(self.partitions)]

    async def refresh(self) -> None:
        """Read the offsets once and set the gauges."""
        for topic, group in self.groups:
            parts = self._parts(self.prefix + topic)
            end = await self.offsets.end(parts)
            committed = await self.offsets.committed(self.prefix + group, parts)
            begin = await self.offsets.beginning(parts)
            # A partition the group never committed is read from its beginning (auto_offset_reset=earliest).
            lag = sum(max(0, end[p] - max(committed.get(p, -1), begin.get(p, 0))) for p in parts if p in end)
            CONSUMER_LAG.labels(topic, group).set(lag)
        for topic in self.dlq_of:
            parts = self._parts(dlq(self.prefix + topic))
            end, begin = await self.offsets.end(parts), await self.offsets.beginning(parts)
            DLQ_DEPTH.labels(dlq(topic)).set(sum(max(0, end[p] - begin.get(p, 0)) for p in parts if p in end))

    def start(self) -> None:
        """Refresh in the background until :meth:`stop` (nothing when ``interval_s`` is 0)."""
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="kafka-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.offsets.close()

    async def _loop(self) -> None:
        while True:
            try:
                await self.refresh()
                self._failing = False
            except Exception as exc:  # a metrics read must never take the service down
                if not self._failing:
                    log.warning(
                        "reading consumer lag and DLQ depth failed (retrying every %.0fs): %r", self.interval_s, exc
                    )
                self._failing = True
            await asyncio.sleep(self.interval_s)


def kafka_gauges(bus: Bus) -> KafkaGauges:
    """The gauges of the topics and groups ``bus`` consumes (opens no connection until started)."""
    settings = bus.settings
    return KafkaGauges(
        AioKafkaOffsets(settings.kafka_bootstrap, f"featurebus-{bus.client_id}"),
        bus.consumer_groups(),
        bus.subscribed_topics(),
        settings.topic_partitions,
        bus.prefix,
        settings.metrics_kafka_interval_s,
    )


class ProcessMetrics:
    """A service process's metrics wiring: the Kafka gauges of its bus, and ``/metrics`` on
    ``FEATUREBUS_METRICS_HOST:FEATUREBUS_METRICS_PORT`` when that port is set.

    Opens nothing until :meth:`start` (call it once the bus's broker started); :meth:`stop` closes both.
    """

    def __init__(self, bus: Bus) -> None:
        self.settings = bus.settings
        self.gauges = kafka_gauges(bus)
        self._server: Any | None = None

    @property
    def port(self) -> int | None:
        """Where the standalone ``/metrics`` listens (None when it does not)."""
        return int(self._server.server_port) if self._server is not None else None

    async def start(self) -> None:
        if self._server is None:
            self._server = serve_standalone(self.settings.metrics_host, self.settings.metrics_port)
        self.gauges.start()

    async def stop(self) -> None:
        await self.gauges.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
