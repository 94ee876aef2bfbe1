"""Starting a batch: the REST trigger, a retry, and batch.requested from Kafka share this path."""

from __future__ import annotations

from typing import Any

from pymongo.errors import DuplicateKeyError

from featurebus.common import ids
from featurebus.common.events import BatchTriggered, CollectionTarget, PluginRef
from featurebus.common.kafka import Bus
from featurebus.registry.documents import BatchDoc, BucketDoc, CollectionDoc, NamespaceDoc, PluginDoc
from featurebus.registry.errors import Conflict, Invalid, NotFound

__all__ = ["batch_unready", "plugin_ref", "start_batch"]


def batch_unready(plugin: PluginDoc) -> tuple[str, str] | None:
    """Why ``plugin`` cannot run batches now (what, and the fix), or None: the one rule that
    creating a collection and starting a batch share."""
    if plugin.scan_status != "passed" or plugin.manifest is None:
        return (
            f"plugin {plugin.plugin_id} has not passed its scan ({plugin.scan_status})",
            f"check GET .../plugins/{plugin.plugin_id}/status",
        )
    if not plugin.batch_enabled:
        return (
            f"plugin {plugin.plugin_id} is not deployed for batch processing",
            f"POST .../plugins/{plugin.plugin_id}/deploy?deployment_type=batch_only",
        )
    return None


async def plugin_ref(namespace_id: str, extractor: dict[str, Any]) -> PluginRef:
    plugin = await PluginDoc.get(f"{namespace_id}/{extractor['plugin_id']}")
    if plugin is None:
        raise Conflict(f"plugin {extractor['plugin_id']} no longer exists", "upload it again or delete the collection")
    unready = batch_unready(plugin)
    if unready is not None or plugin.manifest is None:
        message, hint = unready or ("the plugin has no manifest", "upload it again")
        raise Conflict(message, hint)
    return PluginRef(
        plugin_id=plugin.plugin_id,
        name=plugin.name,
        version=plugin.version,
        archive_uri=plugin.archive_uri,
        archive_sha256=plugin.archive_sha256,
        parameters={**plugin.params, **(extractor.get("parameters") or {})},
        compute_profile=plugin.manifest.compute_profile,
        features=plugin.manifest.features,
    )


async def start_batch(
    bus: Bus,
    namespace: NamespaceDoc,
    bucket: BucketDoc,
    collection_ids: list[str],
    object_ids: list[str] | None = None,
    batch_id: str | None = None,
) -> BatchDoc:
    """Resolve the collections' extractors, record the batch and publish BatchTriggered.

    With a ``batch_id`` (a request from Kafka) a replay records nothing new and re-publishes the
    same trigger, which the pipeline handles idempotently.
    """
    targets = []
    for cid in collection_ids:
        collection = await CollectionDoc.get(cid)
        if collection is None or collection.namespace_id != namespace.id:
            raise NotFound(f"collection {cid!r} not found in this namespace")
        if bucket.id not in collection.bucket_ids:
            raise Invalid(
                f"collection {cid} does not use bucket {bucket.id} as its source",
                f"its source buckets are {collection.bucket_ids}",
            )
        targets.append(
            CollectionTarget(
                collection_id=cid,
                feature_extractors=[await plugin_ref(namespace.id, fe) for fe in collection.feature_extractors],
            )
        )
    batch_id = batch_id or ids.new_id("btch")
    batch = BatchDoc(
        id=batch_id,
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        bucket_id=bucket.id,
        collection_ids=collection_ids,
        task_id=ids.deterministic_id("task", batch_id),
        object_ids=object_ids,
    )
    try:
        await batch.insert()
    except DuplicateKeyError:
        batch = await BatchDoc.get(batch_id) or batch
    await bus.publish(
        BatchTriggered(
            org_id=namespace.org_id,
            namespace_id=namespace.id,
            bucket_id=bucket.id,
            batch_id=batch_id,
            collections=targets,
            object_ids=object_ids,
            expected_objects=None if object_ids else bucket.object_count,
        ),
        key=bucket.id,
    )
    return batch
