"""Create and delete a collection's Qdrant collection from its lifecycle events."""

from __future__ import annotations

import logging

from featurebus.common.events import CollectionLifecycle
from featurebus.indexer.qdrant_index import QdrantIndex, collection_name
from featurebus.indexer.vector_schema import SchemaError, schema_differences, schema_from_indexes

__all__ = ["apply_lifecycle"]

log = logging.getLogger("featurebus.indexer")


async def apply_lifecycle(event: CollectionLifecycle, index: QdrantIndex) -> None:
    """``created``: create ``fb_{collection_id}`` unless it exists with the same vectors (idempotent);
    an existing collection with other vectors raises SchemaError (logged, then dead-lettered).
    ``deleted``: drop it (no-op when already gone)."""
    cid = event.collection_id
    if event.action == "deleted":
        existed = await index.delete(cid)
        log.info("collection=%s qdrant=%s deleted=%s", cid, collection_name(cid), existed)
        return
    try:
        wanted = schema_from_indexes(cid, event.vector_indexes)
    except SchemaError as exc:
        log.error("collection=%s cannot be created: %s", cid, exc)
        raise
    existing = await index.schema(cid)
    if existing is None:
        try:
            await index.create(cid, wanted)
        except Exception:
            # Another indexer (server mode) may have created it between our check and create.
            existing = await index.schema(cid)
            if existing is None:
                raise
        else:
            log.info(
                "collection=%s qdrant=%s created vectors=%s",
                cid,
                collection_name(cid),
                {s.name: f"{s.size}-d {s.distance}" for s in wanted.values()},
            )
            return
    differences = schema_differences(existing, wanted)
    if differences:
        message = (
            f"collection {cid}: Qdrant collection {collection_name(cid)} already exists with other vectors: "
            + "; ".join(differences)
            + " — delete the collection and create it again to change its vectors"
        )
        log.error(message)
        raise SchemaError(message)
    log.info("collection=%s qdrant=%s already exists with the same vectors", cid, collection_name(cid))
