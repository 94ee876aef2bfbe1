"""Buckets: create, list, read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.common import ids
from featurebus.registry.auth import Principal, principal, resolve_namespace
from featurebus.registry.bucket_schema import SchemaError, check_schema
from featurebus.registry.documents import BucketDoc, NamespaceDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.paging import Page, fetch, page

router = APIRouter()


def bucket_view(b: BucketDoc) -> dict[str, Any]:
    return {
        "bucket_id": b.id,
        "bucket_name": b.bucket_name,
        "name": b.bucket_name,
        "bucket_schema": b.bucket_schema,
        "namespace_id": b.namespace_id,
        "object_count": b.object_count,
        "created_at": b.created_at,
    }


async def get_bucket(who: Principal, ns: str, bucket_id: str) -> tuple[NamespaceDoc, BucketDoc]:
    namespace = await resolve_namespace(who, ns)
    bucket = await BucketDoc.get(bucket_id)
    if bucket is None or bucket.namespace_id != namespace.id:
        raise ApiError(404, f"bucket {bucket_id!r} not found in namespace {ns!r}")
    return namespace, bucket


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


@router.post("/v1/namespaces/{ns}/buckets", status_code=201)
async def create_bucket(ns: str, body: CreateBucket, who: Principal = Depends(principal)) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    try:
        check_schema(body.bucket_schema)
    except SchemaError as exc:
        raise ApiError(422, str(exc), exc.hint) from None
    if json_size(body.bucket_schema) > MAX_STORED_JSON:
        raise ApiError(422, f"bucket_schema is over {MAX_STORED_JSON} bytes as JSON", "keep to properties and types")
    bucket = BucketDoc(
        id=ids.new_id("bkt"),
        org_id=who.org_id,
        namespace_id=namespace.id,
        bucket_name=body.bucket_name,
        bucket_schema=body.bucket_schema,
    )
    await bucket.insert()
    return bucket_view(bucket)


@router.get("/v1/namespaces/{ns}/buckets")
async def list_buckets(ns: str, who: Principal = Depends(principal), p: Page = Depends(page)) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    docs, total = await fetch(lambda: BucketDoc.find(BucketDoc.namespace_id == namespace.id), p)
    return p.view([bucket_view(b) for b in docs], total)


@router.get("/v1/namespaces/{ns}/buckets/{bucket_id}")
async def get_bucket_route(ns: str, bucket_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return bucket_view((await get_bucket(who, ns, bucket_id))[1])
