"""``/v1/namespaces/{ns}/buckets/{bucket_id}/objects``: add one object, or up to 1,000 (all or none).

The body is read as BodyGuard parsed it and checked by the use case against the bucket's schema,
which decides what an object may hold (see :mod:`featurebus.registry.usecases.objects`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from featurebus.common.events import Blob, IngestedObject
from featurebus.registry.auth import Principal, principal
from featurebus.registry.body_guard import json_of
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.usecases import objects

router = APIRouter(prefix="/v1/namespaces/{ns}/buckets/{bucket_id}/objects")


class BlobView(BaseModel):
    """A blob as accepted: inline text is not repeated back."""

    blob_id: str
    property: str
    type: str
    uri: str | None
    mime_type: str
    size_bytes: int
    sha256: str | None

    @classmethod
    def of(cls, b: Blob) -> BlobView:
        return cls(**b.model_dump(exclude={"data"}))


class ObjectView(BaseModel):
    object_id: str
    bucket_id: str
    blobs: list[BlobView]

    @classmethod
    def of(cls, bucket_id: str, obj: IngestedObject) -> ObjectView:
        return cls(object_id=obj.object_id, bucket_id=bucket_id, blobs=[BlobView.of(b) for b in obj.blobs])


class ObjectsView(BaseModel):
    bucket_id: str
    count: int
    objects: list[ObjectView]


@router.post("", status_code=201)
async def add_object(
    ns: str, bucket_id: str, request: Request, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> ObjectView:
    return ObjectView.of(bucket_id, await objects.add_object(c, who, ns, bucket_id, json_of(request)))


@router.post("/batch", status_code=201)
async def add_objects(
    ns: str, bucket_id: str, request: Request, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> ObjectsView:
    """Up to 1,000 objects at once: all are accepted, or none (a 422 names the first bad one)."""
    added = await objects.add_objects(c, who, ns, bucket_id, json_of(request))
    return ObjectsView(bucket_id=bucket_id, count=len(added), objects=[ObjectView.of(bucket_id, o) for o in added])
