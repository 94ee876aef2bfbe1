"""Collections: which feature extractors run over which buckets, and the vector indexes they make."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.common import ids
from featurebus.common.events import CollectionLifecycle, VectorIndex
from featurebus.registry.auth import Principal, principal, resolve_namespace
from featurebus.registry.batch_start import batch_unready
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import BucketDoc, CollectionDoc, NamespaceDoc, PluginDoc, RetrieverDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.paging import Page, fetch, page

router = APIRouter(prefix="/v1/namespaces/{ns}/collections")


def collection_view(col: CollectionDoc) -> dict[str, Any]:
    return {
        "collection_id": col.id,
        "collection_name": col.collection_name,
        "name": col.collection_name,
        "namespace_id": col.namespace_id,
        "feature_extractors": col.feature_extractors,
        "source": {"type": "bucket", "bucket_ids": col.bucket_ids},
        "vector_indexes": [v.model_dump() for v in col.vector_indexes],
        "created_at": col.created_at,
    }


class ExtractorSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")
    feature_extractor_name: str = Field(max_length=64)
    version: str = Field(max_length=64)
    parameters: dict[str, Any] = Field(default_factory=dict)


class Source(BaseModel):
    type: str = "bucket"
    bucket_ids: list[str] = Field(min_length=1, max_length=100)


class CreateCollection(BaseModel):
    model_config = ConfigDict(extra="ignore")
    collection_name: str = Field(min_length=1, max_length=100)
    feature_extractors: list[ExtractorSpec] = Field(min_length=1, max_length=32)
    source: Source

    @model_validator(mode="before")
    @classmethod
    def accept_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "collection_name" not in data and "name" in data:
            data = {**data, "collection_name": data["name"]}
        return data


async def resolve_collection(namespace: NamespaceDoc, ident: str) -> CollectionDoc:
    col = await CollectionDoc.get(ident)
    if col is None or col.namespace_id != namespace.id:
        col = await CollectionDoc.find_one(
            CollectionDoc.namespace_id == namespace.id, CollectionDoc.collection_name == ident
        )
    if col is None:
        raise ApiError(404, f"collection {ident!r} not found in namespace {namespace.namespace_name!r}")
    return col


@router.post("", status_code=201)
async def create_collection(
    ns: str, body: CreateCollection, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    if body.source.type != "bucket":
        raise ApiError(
            422, f"source.type {body.source.type!r} is not supported", 'use {"type": "bucket", "bucket_ids": [...]}'
        )
    for bucket_id in body.source.bucket_ids:
        bucket = await BucketDoc.get(bucket_id)
        if bucket is None or bucket.namespace_id != namespace.id:
            raise ApiError(422, f"source.bucket_ids: bucket {bucket_id!r} not found in this namespace")
    extractors: list[dict[str, Any]] = []
    indexes: list[VectorIndex] = []
    for i, spec in enumerate(body.feature_extractors):
        if json_size(spec.parameters) > MAX_STORED_JSON:
            raise ApiError(422, f"feature_extractors[{i}].parameters are over {MAX_STORED_JSON} bytes as JSON")
        try:
            plugin_id = ids.plugin_id(spec.feature_extractor_name, spec.version)
        except ValueError as exc:
            raise ApiError(422, f"feature_extractors[{i}].version: {exc}") from None
        plugin = await PluginDoc.get(f"{namespace.id}/{plugin_id}")
        if plugin is None:
            raise ApiError(
                422,
                f"feature_extractors[{i}]: plugin {plugin_id} is not uploaded to this namespace",
                "upload it with POST .../plugins/uploads",
            )
        unready = batch_unready(plugin)
        if unready is not None or plugin.manifest is None:
            message, hint = unready or ("the plugin has no manifest", "upload it again")
            raise ApiError(409, f"feature_extractors[{i}]: {message}", hint)
        if not plugin.manifest.features:
            raise ApiError(
                422,
                f"plugin {plugin_id} declares no features: the collection would index 0 documents",
                "add features to manifest.py with feature_type, feature_name, embedding_dim, distance_metric",
            )
        for feature in plugin.manifest.features:
            if any(v.name == feature.feature_name for v in indexes):
                raise ApiError(
                    422,
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
        extractors.append(
            {
                "feature_extractor_name": plugin.name,
                "version": plugin.version,
                "parameters": spec.parameters,
                "plugin_id": plugin_id,
            }
        )
    col = CollectionDoc(
        id=ids.new_id("col"),
        org_id=who.org_id,
        namespace_id=namespace.id,
        collection_name=body.collection_name,
        feature_extractors=extractors,
        bucket_ids=body.source.bucket_ids,
        vector_indexes=indexes,
    )
    await col.insert()
    await c.bus.publish(
        CollectionLifecycle(
            action="created", org_id=who.org_id, namespace_id=namespace.id, collection_id=col.id, vector_indexes=indexes
        ),
        key=col.id,
    )
    return collection_view(col)


@router.get("")
async def list_collections(ns: str, who: Principal = Depends(principal), p: Page = Depends(page)) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    docs, total = await fetch(lambda: CollectionDoc.find(CollectionDoc.namespace_id == namespace.id), p)
    return p.view([collection_view(d) for d in docs], total)


@router.get("/{collection}")
async def get_collection(ns: str, collection: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return collection_view(await resolve_collection(await resolve_namespace(who, ns), collection))


@router.delete("/{collection}")
async def delete_collection(
    ns: str, collection: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    col = await resolve_collection(namespace, collection)
    users = [
        r.id
        for r in await RetrieverDoc.find(RetrieverDoc.namespace_id == namespace.id).to_list()
        if r.collection_ids and col.id in r.collection_ids
    ]
    if users:
        raise ApiError(409, f"collection {col.id} is used by retrievers {users}", "delete those retrievers first")
    await col.delete()
    await c.bus.publish(
        CollectionLifecycle(action="deleted", org_id=who.org_id, namespace_id=namespace.id, collection_id=col.id),
        key=col.id,
    )
    return {"deleted": True, "collection_id": col.id}
