"""The cancelled batches a process remembers: idempotent, bounded, caught up from the log on start."""

from __future__ import annotations

from typing import Any

import pytest

from featurebus.common.cancellations import TOPIC, CancelledBatches
from featurebus.common.events import BatchCancelled, BatchPlanned


def cancelled(batch_id: str) -> BatchCancelled:
    return BatchCancelled(org_id="o", namespace_id="n", batch_id=batch_id)


def test_a_replayed_cancellation_changes_nothing_and_the_oldest_are_forgotten_first() -> None:
    known = CancelledBatches(limit=2)
    for batch_id in ("b1", "b1", "b2", "b1"):
        known.add(cancelled(batch_id))
    assert len(known) == 2 and "b1" in known and "b2" in known
    known.add(cancelled("b3"))
    assert "b1" not in known and "b2" in known and "b3" in known
    with pytest.raises(ValueError, match="at least 1"):
        CancelledBatches(limit=0)


async def test_catch_up_reads_the_whole_retained_log_of_batch_cancelled() -> None:
    class Log:
        def __init__(self) -> None:
            self.topics: list[str] = []

        async def read_log(self, topic: str) -> list[Any]:
            self.topics.append(topic)
            # Another model in the list is ignored (the log holds one topic's events only).
            return [
                cancelled("b1"),
                cancelled("b2"),
                cancelled("b1"),
                BatchPlanned(batch_id="x", namespace_id="n", frames_total=0, rows_in=0),
            ]

    log, known = Log(), CancelledBatches()
    assert await known.catch_up(log) == 2
    assert log.topics == [TOPIC] and "b1" in known and "x" not in known
