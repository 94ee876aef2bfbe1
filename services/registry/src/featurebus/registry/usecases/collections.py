"""Collections: which feature extractors run over which buckets, and the vector indexes they make.

Creating and deleting one tells the indexer on ``collection.lifecycle`` (it creates or drops the
vector store's collection).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from featurebus.common import ids
from featurebus.common.events import CollectionLifecycle, VectorIndex
from featurebus.registry.auth import Principal, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.plugin_readiness import ready_manifest
from featurebus.registry.plugin_resolution import resolve_plugin
from featurebus.registry.records import Collection, Namespace
from featurebus.registry.tables import Tables

__all__ = [
    "Extractor",
    "create_collection",
    "delete_collection",
    "get_collection",
    "list_collections",
    "resolve_collection",
]


@dataclass(frozen=True)
class Extractor:
    """One feature extractor asked for: a plugin by name and version, and its parameters."""

    name: str
    version: str
    parameters: dict[str, Any] = field(default_factory=dict)


async def resolve_collection(tables: Tables, namespace: Namespace, ident: str) -> Collection:
    """The collection of ``namespace`` with this id, or else this name; NotFound otherwise."""
    found = await tables.collections.find_one(id=ident, namespace_id=namespace.id)
    if found is None:
        found = await tables.collections.find_one(namespace_id=namespace.id, collection_name=ident)
    if found is None:
        raise NotFound(f"collection {ident!r} not found in namespace {namespace.namespace_name!r}")
    return found


async def create_collection(
    c: Ctx,
    who: Principal,
    ns: str,
    name: str,
    extractors: list[Extractor],
    *,
    source_type: str = "bucket",
    bucket_ids: list[str],
) -> Collection:
    """Refused unless every bucket is the namespace's and every plugin is ready for batches and
    declares features, no two of which share a vector name."""
    namespace = await resolve_namespace(c.tables, who, ns)
    if source_type != "bucket":
        raise Invalid(f"source.type {source_type!r} is not supported", 'use {"type": "bucket", "bucket_ids": [...]}')
    for bucket_id in bucket_ids:
        if await c.tables.buckets.find_one(id=bucket_id, namespace_id=namespace.id) is None:
            raise Invalid(f"source.bucket_ids: bucket {bucket_id!r} not found in this namespace")
    chosen: list[dict[str, Any]] = []
    indexes: list[VectorIndex] = []
    for i, spec in enumerate(extractors):
        chosen.append(await _extractor(c, namespace, f"feature_extractors[{i}]", spec, indexes))
    collection = Collection(
        id=ids.new_id("col"),
        org_id=who.org_id,
        namespace_id=namespace.id,
        collection_name=name,
        feature_extractors=chosen,
        bucket_ids=bucket_ids,
        vector_indexes=indexes,
    )
    await c.tables.collections.insert(collection)
    await c.bus.publish(
        CollectionLifecycle(
            action="created",
            org_id=who.org_id,
            namespace_id=namespace.id,
            collection_id=collection.id,
            vector_indexes=indexes,
        ),
        key=collection.id,
    )
    return collection


async def _extractor(
    c: Ctx, namespace: Namespace, where: str, spec: Extractor, indexes: list[VectorIndex]
) -> dict[str, Any]:
    """The stored form of one extractor, its vectors appended to ``indexes``; refusals name ``where``."""
    if json_size(spec.parameters) > MAX_STORED_JSON:
        raise Invalid(f"{where}.parameters are over {MAX_STORED_JSON} bytes as JSON")
    try:
        plugin_id = ids.plugin_id(spec.name, spec.version)
    except ValueError as exc:
        raise Invalid(f"{where}.version: {exc}") from None
    plugin = await resolve_plugin(c.tables, namespace, plugin_id)
    if plugin is None:
        raise Invalid(
            f"{where}: plugin {plugin_id} is not uploaded to this namespace", "upload it with POST .../plugins/uploads"
        )
    manifest = ready_manifest(plugin, f"{where}: ")
    if not manifest.features:
        raise Invalid(
            f"plugin {plugin_id} declares no features: the collection would index 0 documents",
            "add features to manifest.py with feature_type, feature_name, embedding_dim, distance_metric",
        )
    for feature in manifest.features:
        if any(v.name == feature.feature_name for v in indexes):
            raise Invalid(
                f"two feature extractors both produce the vector {feature.feature_name!r}",
                "use extractors with distinct feature names in one collection",
            )
        indexes.append(
            VectorIndex(
                name=feature.feature_name,
                dimensions=feature.embedding_dim,
                distance=feature.distance_metric,
                feature_uri=f"mixpeek://{plugin.name}@{plugin.version}/{feature.feature_name}",
                plugin_id=plugin_id,
            )
        )
    return {
        "feature_extractor_name": plugin.name,
        "version": plugin.version,
        "parameters": spec.parameters,
        "plugin_id": plugin_id,
    }


async def list_collections(c: Ctx, who: Principal, ns: str, offset: int, limit: int) -> tuple[list[Collection], int]:
    namespace = await resolve_namespace(c.tables, who, ns)
    return await c.tables.collections.page(offset, limit, namespace_id=namespace.id)


async def get_collection(c: Ctx, who: Principal, ns: str, ident: str) -> Collection:
    return await resolve_collection(c.tables, await resolve_namespace(c.tables, who, ns), ident)


async def delete_collection(c: Ctx, who: Principal, ns: str, ident: str) -> Collection:
    """Refused while a retriever searches the collection (its searches would find nothing)."""
    namespace = await resolve_namespace(c.tables, who, ns)
    collection = await resolve_collection(c.tables, namespace, ident)
    users = [
        r.id
        for r in await c.tables.retrievers.find(namespace_id=namespace.id)
        if r.collection_ids and collection.id in r.collection_ids
    ]
    if users:
        raise Conflict(f"collection {collection.id} is used by retrievers {users}", "delete those retrievers first")
    await c.tables.collections.delete(collection.id)
    await c.bus.publish(
        CollectionLifecycle(
            action="deleted", org_id=who.org_id, namespace_id=namespace.id, collection_id=collection.id
        ),
        key=collection.id,
    )
    return collection
