"""Buckets, objects, batches and tasks."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.common import ids
from featurebus.common.events import IngestedObject, ObjectsIngested
from featurebus.registry.auth import Principal, may_see_namespace, principal, resolve_namespace
from featurebus.registry.batching import start_batch
from featurebus.registry.body_guard import json_of
from featurebus.registry.bucket_schema import BlobRequest, SchemaError, build_blobs, check_schema, parse_blobs
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import BatchDoc, BlobUpload, BucketDoc, FrameResult, NamespaceDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.paging import Page, fetch, page
from featurebus.registry.upload_checks import StoredBlob, UploadProblem
from featurebus.registry.upload_sealing import verify_upload

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


def batch_view(b: BatchDoc) -> dict[str, Any]:
    return {
        "batch_id": b.id,
        "task_id": b.task_id,
        "status": b.status,
        "bucket_id": b.bucket_id,
        "collection_ids": b.collection_ids,
        "rows_in": b.rows_in,
        "rows_embedded": b.rows_embedded,
        "rows_written": b.rows_written,
        "rows_failed": b.rows_failed,
        "frames_total": b.frames_total,
        "frames_done": b.frames_done,
        "failure_summary": b.failure_summary,
        "error": b.error,
        "object_ids": b.object_ids,
        "created_at": b.created_at,
        "completed_at": b.completed_at,
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
        message = f"{where}{exc}" if str(exc).startswith("blobs") else f"{where.rstrip('.')}: {exc}".lstrip(": ")
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


class TriggerBody(BaseModel):
    collection_ids: list[str] = Field(min_length=1, max_length=100)


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/trigger", status_code=201)
async def trigger(
    ns: str, bucket_id: str, body: TriggerBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    return batch_view(await start_batch(c.bus, namespace, bucket, body.collection_ids))


async def get_batch(who: Principal, ns: str, bucket_id: str, batch_id: str) -> tuple[NamespaceDoc, BucketDoc, BatchDoc]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    batch = await BatchDoc.get(batch_id)
    if batch is None or batch.bucket_id != bucket.id:
        raise ApiError(404, f"batch {batch_id!r} not found in bucket {bucket_id!r}")
    return namespace, bucket, batch


@router.get("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}")
async def batch_status(ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return batch_view((await get_batch(who, ns, bucket_id, batch_id))[2])


@router.get("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/failed-documents")
async def failed_documents(
    ns: str,
    bucket_id: str,
    batch_id: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, description="at most 1000 are returned"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    await get_batch(who, ns, bucket_id, batch_id)
    frames = await FrameResult.find(FrameResult.batch_id == batch_id).sort("+frame_id").to_list()
    rows = [
        {"collection_id": f.collection_id, **failure.model_dump(mode="json")} for f in frames for failure in f.failures
    ]
    limit = min(limit, 1000)
    return {"results": rows[offset : offset + limit], "total": len(rows), "offset": offset, "limit": limit}


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/retry", status_code=201)
async def retry(
    ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket, batch = await get_batch(who, ns, bucket_id, batch_id)
    frames = await FrameResult.find(FrameResult.batch_id == batch_id).to_list()
    failed = sorted({failure.object_id for f in frames for failure in f.failures})
    if not failed:
        raise ApiError(409, f"batch {batch_id} has no failed documents to retry")
    return batch_view(await start_batch(c.bus, namespace, bucket, batch.collection_ids, failed))


@router.get("/v1/tasks/{task_id}")
async def task(task_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    batch = await BatchDoc.find_one(BatchDoc.task_id == task_id, BatchDoc.org_id == who.org_id)
    if batch is None or not await may_see_namespace(who, batch.namespace_id):
        raise ApiError(404, f"task {task_id!r} not found")
    return {
        "task_id": task_id,
        "task_type": "batch",
        "status": batch.status,
        "batch_id": batch.id,
        "bucket_id": batch.bucket_id,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    }
