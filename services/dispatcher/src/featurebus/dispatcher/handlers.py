"""The dispatcher's Kafka subscribers: parse the typed event, call the use case, publish."""

from __future__ import annotations

from featurebus.common.events import BatchTriggered, ObjectsIngested
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.dispatcher.batching import Dispatcher

__all__ = ["BATCHES_GROUP", "INGEST_GROUP", "register"]

INGEST_GROUP = "dispatcher-ingest"
BATCHES_GROUP = "dispatcher-batches"


def register(bus: Bus, dispatcher: Dispatcher) -> None:
    """Subscribe the dispatcher's handlers on ``bus``."""
    bus.publishes("batch.ready", "batch.planned")

    @bus.subscriber("objects.ingested", group=INGEST_GROUP)
    async def on_objects_ingested(event: ObjectsIngested) -> None:
        """Store the objects of a bucket; invalid objects dead-letter the message after the valid ones are stored."""
        with span_for("dispatcher.objects_ingested", event):
            await dispatcher.ingest(event)

    @bus.subscriber("batch.triggered", group=BATCHES_GROUP)
    async def on_batch_triggered(event: BatchTriggered) -> None:
        """Write the batch's frames, announce each (BatchReady), then the totals (BatchPlanned)."""
        with span_for("dispatcher.batch_triggered", event):
            plan = await dispatcher.plan(event)
            for ready in plan.ready:
                # Keyed by frame: a batch's frames spread over the partitions, so that inference
                # consumers (and processes) run them in parallel. Their order does not matter.
                await bus.publish(ready, key=ready.frame_id)
            await bus.publish(plan.planned, key=event.batch_id)
