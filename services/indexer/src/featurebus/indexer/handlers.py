"""The indexer's Kafka subscribers: parse the typed event, call the use case, publish."""

from __future__ import annotations

from featurebus.common.events import CollectionLifecycle, RetrievalEmbedded, VectorsProduced
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.indexer.collection_lifecycle import apply_lifecycle
from featurebus.indexer.indexing import VectorSetIndexer
from featurebus.indexer.qdrant_index import QdrantIndex
from featurebus.indexer.searching import answer_retrieval

__all__ = ["LIFECYCLE_GROUP", "RETRIEVAL_GROUP", "VECTORS_GROUP", "register"]

VECTORS_GROUP = "indexer-vectors"
LIFECYCLE_GROUP = "indexer-lifecycle"
RETRIEVAL_GROUP = "indexer-retrieval"


def register(bus: Bus, index: QdrantIndex, indexer: VectorSetIndexer) -> None:
    """Subscribe the indexer's handlers on ``bus``."""
    bus.publishes("batch.indexed", "retrieval.answered")

    @bus.subscriber("collection.lifecycle", group=LIFECYCLE_GROUP)
    async def on_collection_lifecycle(event: CollectionLifecycle) -> None:
        """Create or delete the collection's Qdrant collection; a schema conflict is dead-lettered."""
        with span_for("indexer.collection_lifecycle", event):
            await apply_lifecycle(event, index)

    @bus.subscriber("vectors.produced", group=VECTORS_GROUP)
    async def on_vectors_produced(event: VectorsProduced) -> None:
        """Write a frame's valid vectors (durably), then report the frame's reconciled counts."""
        with span_for("indexer.vectors_produced", event):
            indexed = await indexer.index_vectors(event)
            await bus.publish(indexed, key=event.batch_id)

    @bus.subscriber("retrieval.embedded", group=RETRIEVAL_GROUP)
    async def on_retrieval_embedded(event: RetrievalEmbedded) -> None:
        """Search every collection of each search by its named vector; answer with hits or an error."""
        with span_for("indexer.retrieval_embedded", event):
            answered = await answer_retrieval(event, index)
            await bus.publish(answered, key=event.request_id)
