"""Objects of a bucket: one, or up to 1,000 at once (all or none), checked against its schema."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Request

from featurebus.common import ids
from featurebus.common.events import IngestedObject, ObjectsIngested
from featurebus.registry.auth import Principal, principal
from featurebus.registry.body_guard import json_of
from featurebus.registry.bucket_schema import BlobRequest, SchemaError, build_blobs, parse_blobs
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import BlobUpload, BucketDoc, NamespaceDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.routes.buckets import get_bucket
from featurebus.registry.upload_checks import StoredBlob, UploadProblem
from featurebus.registry.upload_sealing import verify_upload

router = APIRouter()


async def verified_uploads(c: Ctx, bucket: BucketDoc, requests: list[BlobRequest]) -> dict[str, StoredBlob]:
    """The verified upload of every upload_id the blobs reference (verifying each on first use).

    Nothing is published until every blob of the object checked out, so a rejected object
    changes nothing: its uploads stay usable (an upload may be referenced any number of times).
    """
    found: dict[str, StoredBlob] = {}
    for r in requests:
        if r.upload_id is None or r.upload_id in found:
            continue
        upload = await BlobUpload.get(r.upload_id)
        if upload is None or upload.bucket_id != bucket.id:
            raise SchemaError(
                f"blobs[{r.index}].upload_id {r.upload_id!r} is not an upload of bucket {bucket.id}",
                f"create the upload in this bucket: POST .../buckets/{bucket.id}/uploads",
            )
        try:
            found[r.upload_id] = await verify_upload(c.store, upload, c.settings.max_blob_bytes)
        except UploadProblem as exc:
            raise SchemaError(f"blobs[{r.index}].upload_id {r.upload_id}: {exc}", exc.hint) from None
    return found


OBJECT_EXAMPLE = '{"blobs": [{"property": "text", "type": "text", "data": "..."}]}'
# One ObjectsIngested event stays well under Kafka's 1 MiB default message size.
MAX_EVENT_BYTES = 512 * 1024
MAX_OBJECTS_PER_REQUEST = 1000
MAX_OBJECT_ID = 256


async def checked_object(c: Ctx, bucket: BucketDoc, body: Any, where: str = "") -> IngestedObject:
    """One object of a request, checked against the bucket's schema (``where`` prefixes field names)."""
    if not isinstance(body, dict):
        raise ApiError(422, f"{where or 'the body'} must be an object with blobs", OBJECT_EXAMPLE)
    object_id = body.get("object_id") or ids.new_id("obj")
    if not isinstance(object_id, str) or len(object_id) > MAX_OBJECT_ID:
        raise ApiError(
            422, f"{where}object_id must be a string of at most {MAX_OBJECT_ID} characters", "or leave it out"
        )
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ApiError(422, f"{where}metadata must be an object")
    try:
        requests = parse_blobs(body.get("blobs"), bucket.bucket_schema["properties"], c.settings.max_inline_text_bytes)
        uploads = await verified_uploads(c, bucket, requests)
        blobs = build_blobs(
            object_id, requests, lambda oid, prop, i: ids.deterministic_id("blob", oid, prop, str(i)), uploads
        )
    except SchemaError as exc:
        # "objects[2].blobs[0].property ..." for a field; "objects[2]: required properties ..." otherwise
        message = f"{where.rstrip('.')}: {exc}".lstrip(": ") if exc.of_object else f"{where}{exc}"
        raise ApiError(422, message, exc.hint) from None
    obj = IngestedObject(object_id=object_id, blobs=blobs, metadata=metadata)
    size = len(obj.model_dump_json())
    if size > MAX_EVENT_BYTES:
        raise ApiError(
            422,
            f"{where.rstrip('.') or 'body'}: the object is {size} bytes with its metadata; at most {MAX_EVENT_BYTES}",
            "keep metadata small; put long text in a blob of its own object",
        )
    return obj


async def publish_objects(
    c: Ctx, who: Principal, namespace: NamespaceDoc, bucket: BucketDoc, objects: list[IngestedObject]
) -> None:
    """Hand checked objects to the dispatcher, in events of at most MAX_EVENT_BYTES, and count them."""
    chunk: list[IngestedObject] = []
    size = 0
    for obj in objects:
        obj_size = len(obj.model_dump_json())
        if chunk and size + obj_size > MAX_EVENT_BYTES:
            await c.bus.publish(
                ObjectsIngested(org_id=who.org_id, namespace_id=namespace.id, bucket_id=bucket.id, objects=chunk),
                key=bucket.id,
            )
            chunk, size = [], 0
        chunk.append(obj)
        size += obj_size
    if chunk:
        await c.bus.publish(
            ObjectsIngested(org_id=who.org_id, namespace_id=namespace.id, bucket_id=bucket.id, objects=chunk),
            key=bucket.id,
        )
    await BucketDoc.find_one(BucketDoc.id == bucket.id).inc({BucketDoc.object_count: len(objects)})


def object_view(bucket: BucketDoc, obj: IngestedObject) -> dict[str, Any]:
    return {
        "object_id": obj.object_id,
        "bucket_id": bucket.id,
        "blobs": [b.model_dump(exclude={"data"}) for b in obj.blobs],
    }


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/objects", status_code=201)
async def add_object(
    ns: str, bucket_id: str, request: Request, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    obj = await checked_object(c, bucket, json_of(request))
    await publish_objects(c, who, namespace, bucket, [obj])
    return object_view(bucket, obj)


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/objects/batch", status_code=201)
async def add_objects(
    ns: str, bucket_id: str, request: Request, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Up to MAX_OBJECTS_PER_REQUEST objects at once: all are accepted, or none (a 422 names the first bad one)."""
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    body = json_of(request)
    items = body.get("objects") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(422, "objects must be a non-empty list of objects", '{"objects": [' + OBJECT_EXAMPLE + "]}")
    if len(items) > MAX_OBJECTS_PER_REQUEST:
        raise ApiError(
            422,
            f"objects holds {len(items)} objects; one request takes at most {MAX_OBJECTS_PER_REQUEST}",
            f"send them in requests of {MAX_OBJECTS_PER_REQUEST} objects or fewer",
        )
    objects = [await checked_object(c, bucket, item, f"objects[{i}].") for i, item in enumerate(items)]
    repeated = sorted(i for i, n in Counter(o.object_id for o in objects).items() if n > 1)
    if repeated:
        raise ApiError(
            422, f"objects repeat object_id {repeated[:5]}", "give each object of a request its own object_id"
        )
    await publish_objects(c, who, namespace, bucket, objects)
    return {"bucket_id": bucket.id, "count": len(objects), "objects": [object_view(bucket, o) for o in objects]}
