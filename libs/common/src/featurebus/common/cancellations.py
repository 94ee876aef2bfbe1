"""The batches a process knows to be cancelled, from ``batch.cancelled`` (DESIGN.md §1).

Each service that must stop work for a cancelled batch (dispatcher, inference, indexer) keeps one
:class:`CancelledBatches` per process and checks it in its handlers before doing the work.

What survives a restart: the Kafka log of ``batch.cancelled``, nothing else. On start a process
reads that log from the beginning to its end (:meth:`featurebus.common.kafka.Bus.read_log`) before
it consumes anything else, and its broadcast subscriber reads the log again from the beginning and
then follows it; adding an id twice changes nothing, so every replay is harmless. A process
therefore forgets a cancellation only when the topic's retention has dropped it (or when more than
``limit`` batches were cancelled since), long after the batch's frames have left the queues; the
registry's CANCELED status and counts do not depend on it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Protocol

from featurebus.common.events import BatchCancelled, Event

__all__ = ["DEFAULT_LIMIT", "TOPIC", "CancelledBatches", "LogReader"]

TOPIC = "batch.cancelled"

logger = logging.getLogger("featurebus.cancellations")

# ~100 bytes an id: a few MB at most, kept per process.
DEFAULT_LIMIT = 100_000


class LogReader(Protocol):
    """What :meth:`CancelledBatches.catch_up` needs of :class:`featurebus.common.kafka.Bus`."""

    async def read_log(self, topic: str) -> list[Event]: ...


class CancelledBatches:
    """A bounded set of cancelled batch ids; the oldest are forgotten first."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, event: BatchCancelled) -> None:
        """Remember the event's batch (idempotent: a replay keeps its place)."""
        if event.batch_id in self._ids:
            return
        self._ids[event.batch_id] = None
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def load(self, events: Iterable[BatchCancelled]) -> int:
        """Remember every event of a replayed log; how many ids are known afterwards."""
        for event in events:
            self.add(event)
        return len(self._ids)

    async def catch_up(self, log: LogReader) -> int:
        """Read every cancellation retained in ``batch.cancelled``: on start, before consuming anything else."""
        events = [e for e in await log.read_log(TOPIC) if isinstance(e, BatchCancelled)]
        known = self.load(events)
        logger.info("read %d cancellation(s) from %s: %d cancelled batch(es) known", len(events), TOPIC, known)
        return known

    def __contains__(self, batch_id: object) -> bool:
        return batch_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)
