"""``/v1/namespaces/{ns}/buckets``: create, list, get."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Bucket
from featurebus.registry.usecases import buckets

router = APIRouter(prefix="/v1/namespaces/{ns}/buckets")


class CreateBucket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    bucket_name: str = Field(min_length=1, max_length=100)
    bucket_schema: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def accept_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "bucket_name" not in data and "name" in data:
            data = {**data, "bucket_name": data["name"]}
        return data


class BucketView(BaseModel):
    bucket_id: str
    bucket_name: str
    name: str
    bucket_schema: dict[str, Any]
    namespace_id: str
    object_count: int
    created_at: datetime

    @classmethod
    def of(cls, b: Bucket) -> BucketView:
        return cls(
            bucket_id=b.id,
            bucket_name=b.bucket_name,
            name=b.bucket_name,
            bucket_schema=b.bucket_schema,
            namespace_id=b.namespace_id,
            object_count=b.object_count,
            created_at=b.created_at,
        )


@router.post("", status_code=201)
async def create_bucket(
    ns: str, body: CreateBucket, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BucketView:
    return BucketView.of(await buckets.create_bucket(c, who, ns, body.bucket_name, body.bucket_schema))


@router.get("")
async def list_buckets(
    ns: str, who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> Listing[BucketView]:
    found, total = await buckets.list_buckets(c, who, ns, p.offset, p.limit)
    return Listing.of([BucketView.of(b) for b in found], total, p)


@router.get("/{bucket_id}")
async def get_bucket(ns: str, bucket_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> BucketView:
    return BucketView.of(await buckets.get_bucket(c, who, ns, bucket_id))
