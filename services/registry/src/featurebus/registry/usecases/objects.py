"""Objects of a bucket: one, or up to 1,000 at once (all or none), checked against its schema and
handed to the dispatcher on ``objects.ingested``.

The body is taken as the request's JSON value, not as a pydantic model: the bucket's schema says
which blobs are allowed, and every refusal names its place (``objects[2].blobs[0].property``) with
a hint, as the API always has.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from featurebus.common import ids
from featurebus.common.events import IngestedObject, ObjectsIngested
from featurebus.registry.auth import Principal
from featurebus.registry.bucket_schema import BlobRequest, SchemaError, build_blobs, parse_blobs
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Invalid
from featurebus.registry.records import Bucket
from featurebus.registry.upload_checks import StoredBlob, UploadProblem
from featurebus.registry.usecases.blob_uploads import stored_blob, verify_upload
from featurebus.registry.usecases.buckets import namespace_bucket

__all__ = ["MAX_EVENT_BYTES", "MAX_OBJECTS_PER_REQUEST", "MAX_OBJECT_ID", "add_object", "add_objects"]

OBJECT_EXAMPLE = '{"blobs": [{"property": "text", "type": "text", "data": "..."}]}'
# One ObjectsIngested event stays well under Kafka's 1 MiB default message size.
MAX_EVENT_BYTES = 512 * 1024
MAX_OBJECTS_PER_REQUEST = 1000
MAX_OBJECT_ID = 256


async def add_object(c: Ctx, who: Principal, ns: str, bucket_id: str, body: Any) -> IngestedObject:
    """One object (``body`` is the request's JSON), checked and published; Invalid naming the field."""
    _, bucket = await namespace_bucket(c, who, ns, bucket_id)
    obj = await _checked_object(c, bucket, body)
    await _publish(c, bucket, [obj])
    return obj


async def add_objects(c: Ctx, who: Principal, ns: str, bucket_id: str, body: Any) -> list[IngestedObject]:
    """``{"objects": [...]}``: every object is checked before any is published, so one bad object
    (named by its index) adds none."""
    _, bucket = await namespace_bucket(c, who, ns, bucket_id)
    items = body.get("objects") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise Invalid("objects must be a non-empty list of objects", '{"objects": [' + OBJECT_EXAMPLE + "]}")
    if len(items) > MAX_OBJECTS_PER_REQUEST:
        raise Invalid(
            f"objects holds {len(items)} objects; one request takes at most {MAX_OBJECTS_PER_REQUEST}",
            f"send them in requests of {MAX_OBJECTS_PER_REQUEST} objects or fewer",
        )
    objects = [await _checked_object(c, bucket, item, f"objects[{i}].") for i, item in enumerate(items)]
    repeated = sorted(i for i, n in Counter(o.object_id for o in objects).items() if n > 1)
    if repeated:
        raise Invalid(f"objects repeat object_id {repeated[:5]}", "give each object of a request its own object_id")
    await _publish(c, bucket, objects)
    return objects


async def _checked_object(c: Ctx, bucket: Bucket, body: Any, where: str = "") -> IngestedObject:
    """One object of a request, checked against the bucket's schema (``where`` prefixes field names)."""
    if not isinstance(body, dict):
        raise Invalid(f"{where.rstrip('.') or 'the body'} must be an object with blobs", OBJECT_EXAMPLE)
    object_id = body.get("object_id") or ids.new_id("obj")
    if not isinstance(object_id, str) or len(object_id) > MAX_OBJECT_ID:
        raise Invalid(f"{where}object_id must be a string of at most {MAX_OBJECT_ID} characters", "or leave it out")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise Invalid(f"{where}metadata must be an object")
    try:
        requests = parse_blobs(body.get("blobs"), bucket.bucket_schema["properties"], c.settings.max_inline_text_bytes)
        uploads = await _verified_uploads(c, bucket, requests)
        blobs = build_blobs(object_id, requests, _blob_id, uploads)
    except SchemaError as exc:
        # "objects[2].blobs[0].property ..." for a field; "objects[2]: required properties ..." otherwise
        message = f"{where.rstrip('.')}: {exc}".lstrip(": ") if exc.of_object else f"{where}{exc}"
        raise Invalid(message, exc.hint) from None
    obj = IngestedObject(object_id=object_id, blobs=blobs, metadata=metadata)
    size = len(obj.model_dump_json())
    if size > MAX_EVENT_BYTES:
        raise Invalid(
            f"{where.rstrip('.') or 'body'}: the object is {size} bytes with its metadata; at most {MAX_EVENT_BYTES}",
            "keep metadata small; put long text in a blob of its own object",
        )
    return obj


def _blob_id(object_id: str, prop: str, index: int) -> str:
    return ids.deterministic_id("blob", object_id, prop, str(index))


async def _verified_uploads(c: Ctx, bucket: Bucket, requests: list[BlobRequest]) -> dict[str, StoredBlob]:
    """The verified upload of every upload_id the blobs reference (verifying each on first use).

    Nothing is published until every blob of the object checked out, so a rejected object
    changes nothing: its uploads stay usable (an upload may be referenced any number of times).
    """
    found: dict[str, StoredBlob] = {}
    for r in requests:
        if r.upload_id is None or r.upload_id in found:
            continue
        upload = await c.tables.blob_uploads.find_one(id=r.upload_id, bucket_id=bucket.id)
        if upload is None:
            raise SchemaError(
                f"blobs[{r.index}].upload_id {r.upload_id!r} is not an upload of bucket {bucket.id}",
                f"create the upload in this bucket: POST .../buckets/{bucket.id}/uploads",
            )
        try:
            found[r.upload_id] = stored_blob(await verify_upload(c, upload))
        except UploadProblem as exc:
            raise SchemaError(f"blobs[{r.index}].upload_id {r.upload_id}: {exc}", exc.hint) from None
    return found


async def _publish(c: Ctx, bucket: Bucket, objects: list[IngestedObject]) -> None:
    """Hand checked objects to the dispatcher, in events of at most MAX_EVENT_BYTES, and count them."""
    chunks: list[list[IngestedObject]] = [[]]
    size = 0
    for obj in objects:
        obj_size = len(obj.model_dump_json())
        if chunks[-1] and size + obj_size > MAX_EVENT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(obj)
        size += obj_size
    for chunk in chunks:
        event = ObjectsIngested(
            org_id=bucket.org_id, namespace_id=bucket.namespace_id, bucket_id=bucket.id, objects=chunk
        )
        await c.bus.publish(event, key=bucket.id)
    await c.tables.buckets.increment(bucket.id, "object_count", len(objects))
