"""``/v1/namespaces/{ns}/collections``: create, list, get, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.common.events import VectorIndex
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Collection
from featurebus.registry.usecases import collections
from featurebus.registry.usecases.collections import Extractor

router = APIRouter(prefix="/v1/namespaces/{ns}/collections")


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


class SourceView(BaseModel):
    type: Literal["bucket"] = "bucket"
    bucket_ids: list[str]


class CollectionView(BaseModel):
    collection_id: str
    collection_name: str
    name: str
    namespace_id: str
    feature_extractors: list[dict[str, Any]]
    source: SourceView
    vector_indexes: list[VectorIndex]
    created_at: datetime

    @classmethod
    def of(cls, col: Collection) -> CollectionView:
        return cls(
            collection_id=col.id,
            collection_name=col.collection_name,
            name=col.collection_name,
            namespace_id=col.namespace_id,
            feature_extractors=col.feature_extractors,
            source=SourceView(bucket_ids=col.bucket_ids),
            vector_indexes=col.vector_indexes,
            created_at=col.created_at,
        )


class Deleted(BaseModel):
    deleted: bool = True
    collection_id: str


@router.post("", status_code=201)
async def create_collection(
    ns: str, body: CreateCollection, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> CollectionView:
    extractors = [Extractor(e.feature_extractor_name, e.version, e.parameters) for e in body.feature_extractors]
    created = await collections.create_collection(
        c, who, ns, body.collection_name, extractors, source_type=body.source.type, bucket_ids=body.source.bucket_ids
    )
    return CollectionView.of(created)


@router.get("")
async def list_collections(
    ns: str, who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> Listing[CollectionView]:
    found, total = await collections.list_collections(c, who, ns, p.offset, p.limit)
    return Listing.of([CollectionView.of(col) for col in found], total, p)


@router.get("/{collection}")
async def get_collection(
    ns: str, collection: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> CollectionView:
    return CollectionView.of(await collections.get_collection(c, who, ns, collection))


@router.delete("/{collection}")
async def delete_collection(
    ns: str, collection: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Deleted:
    return Deleted(collection_id=(await collections.delete_collection(c, who, ns, collection)).id)
