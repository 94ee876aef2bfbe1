"""The inference service's Kafka subscribers."""

from __future__ import annotations

from featurebus.common.events import BatchReady, RetrievalRequested
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.inference.processing import Inference

__all__ = ["BATCH_GROUP", "QUERY_GROUP", "register"]

BATCH_GROUP = "inference-batch"
QUERY_GROUP = "inference-query"


def register(bus: Bus, inference: Inference, frame_workers: int = 1) -> None:
    """Subscribe the handlers; ``frame_workers`` consumers take frames in parallel (one per partition)."""
    bus.publishes("vectors.produced", "retrieval.embedded", "retrieval.answered")  # answered: a query that failed
    # Separate consumer groups: a query is never stuck behind a long batch.

    # A frame may run up to frame_timeout_s; Kafka must not consider the consumer dead meanwhile
    # (aiokafka's default max_poll_interval is 300 s, below the default frame timeout).
    poll_ms = int((inference.frame_timeout_s + 60) * 1000)

    # With frame_workers > 1, FastStream runs that many consumers of the group in this process:
    # partitions are processed in parallel, each in order, each committed after its handler.
    @bus.subscriber("batch.ready", group=BATCH_GROUP, max_poll_interval_ms=poll_ms, max_workers=frame_workers)
    async def on_batch_ready(event: BatchReady) -> None:
        """Run one frame on the plugin's warm actor pool and announce its vector set."""
        with span_for("inference.batch_ready", event):
            produced = await inference.run_frame(event)
            await bus.publish(produced, key=event.batch_id)

    @bus.subscriber("retrieval.requested", group=QUERY_GROUP)
    async def on_retrieval_requested(event: RetrievalRequested) -> None:
        """Embed each search's query text with its plugin, for the indexer to search."""
        with span_for("inference.retrieval_requested", event):
            answer = await inference.embed_queries(event)
            await bus.publish(answer, key=event.request_id)
