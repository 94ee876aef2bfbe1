"""The indexer's Kafka subscribers: parse the typed event, call the use case, publish.

Searches do not come by Kafka: the registry calls the internal search API (``search_api.py``).
"""

from __future__ import annotations

import logging

from featurebus.common.cancellations import TOPIC as CANCELLED_TOPIC
from featurebus.common.events import BatchCancelled, CollectionLifecycle, VectorsProduced
from featurebus.common.kafka import Bus
from featurebus.common.metrics import count_frame, new_failures
from featurebus.common.telemetry import span_for
from featurebus.indexer.collection_lifecycle import apply_lifecycle
from featurebus.indexer.indexing import VectorSetIndexer
from featurebus.indexer.qdrant_index import QdrantIndex

__all__ = ["LIFECYCLE_GROUP", "VECTORS_GROUP", "register"]

VECTORS_GROUP = "indexer-vectors"
LIFECYCLE_GROUP = "indexer-lifecycle"

log = logging.getLogger("featurebus.indexer")


def register(bus: Bus, index: QdrantIndex, indexer: VectorSetIndexer) -> None:
    """Subscribe the indexer's handlers on ``bus``."""
    bus.publishes("batch.indexed")

    @bus.subscriber("collection.lifecycle", group=LIFECYCLE_GROUP)
    async def on_collection_lifecycle(event: CollectionLifecycle) -> None:
        """Create or delete the collection's Qdrant collection; a schema conflict is dead-lettered."""
        with span_for("indexer.collection_lifecycle", event):
            await apply_lifecycle(event, index)

    @bus.subscriber("vectors.produced", group=VECTORS_GROUP)
    async def on_vectors_produced(event: VectorsProduced) -> None:
        """Write a frame's valid vectors (durably), then report the frame's reconciled counts.

        Nothing is written or reported for a cancelled batch: the registry counts its rows as cancelled.
        """
        with span_for("indexer.vectors_produced", event):
            if event.batch_id in indexer.cancelled:
                log.info("batch=%s cancelled: frame %s not written", event.batch_id, event.frame_id)
                return
            indexed = await indexer.index_vectors(event)
            await bus.publish(indexed, key=event.batch_id)
            count_frame(
                "indexer", indexed.rows_in, new_failures(event.failures, indexed.failures), indexed.rows_written
            )

    @bus.broadcast_subscriber(CANCELLED_TOPIC, from_beginning=True)
    async def on_batch_cancelled(event: BatchCancelled) -> None:
        """Remember a cancelled batch (every indexer process, the whole retained log on start)."""
        indexer.cancelled.add(event)
