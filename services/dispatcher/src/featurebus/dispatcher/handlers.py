"""The dispatcher's Kafka subscribers: parse the typed event, call the use case, publish."""

from __future__ import annotations

import logging

from featurebus.common.cancellations import TOPIC as CANCELLED_TOPIC
from featurebus.common.cancellations import CancelledBatches
from featurebus.common.events import BatchCancelled, BatchTriggered, ObjectsIngested
from featurebus.common.kafka import Bus
from featurebus.common.metrics import count_frame
from featurebus.common.telemetry import span_for
from featurebus.dispatcher.batching import Dispatcher

__all__ = ["BATCHES_GROUP", "INGEST_GROUP", "register"]

log = logging.getLogger("featurebus.dispatcher")

INGEST_GROUP = "dispatcher-ingest"
BATCHES_GROUP = "dispatcher-batches"


def register(bus: Bus, dispatcher: Dispatcher, cancelled: CancelledBatches) -> None:
    """Subscribe the dispatcher's handlers on ``bus``; ``cancelled`` is filled from ``batch.cancelled``."""
    bus.publishes("batch.ready", "batch.planned")

    @bus.subscriber("objects.ingested", group=INGEST_GROUP)
    async def on_objects_ingested(event: ObjectsIngested) -> None:
        """Store the objects of a bucket; invalid objects dead-letter the message after the valid ones are stored."""
        with span_for("dispatcher.objects_ingested", event):
            await dispatcher.ingest(event)

    @bus.subscriber("batch.triggered", group=BATCHES_GROUP)
    async def on_batch_triggered(event: BatchTriggered) -> None:
        """Write the batch's frames, announce each (BatchReady), then the totals (BatchPlanned).

        A cancelled batch gets its totals only; one cancelled while its frames are announced gets
        no more of them.
        """
        with span_for("dispatcher.batch_triggered", event):
            if event.batch_id in cancelled:
                await bus.publish(await dispatcher.count(event), key=event.batch_id)
                return
            plan = await dispatcher.plan(event)
            for ready in plan.ready:
                if event.batch_id in cancelled:
                    log.info("batch=%s cancelled while its frames were announced: the rest are not", event.batch_id)
                    break
                # Keyed by frame: a batch's frames spread over the partitions, so that inference
                # consumers (and processes) run them in parallel. Their order does not matter.
                await bus.publish(ready, key=ready.frame_id)
                count_frame("dispatcher", ready.row_count)
            await bus.publish(plan.planned, key=event.batch_id)

    @bus.broadcast_subscriber(CANCELLED_TOPIC, from_beginning=True)
    async def on_batch_cancelled(event: BatchCancelled) -> None:
        """Remember a cancelled batch (every dispatcher process, the whole retained log on start)."""
        cancelled.add(event)
