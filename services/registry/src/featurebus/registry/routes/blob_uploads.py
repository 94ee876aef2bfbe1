"""Binary blob uploads into a bucket: presigned URL → PUT → reference the upload_id from an object."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from featurebus.common import ids
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import BlobUpload, BucketDoc, now
from featurebus.registry.errors import ApiError
from featurebus.registry.routes.buckets import get_bucket
from featurebus.registry.upload_checks import UploadProblem, check_request, staging_key
from featurebus.registry.upload_sealing import verify_upload

router = APIRouter(prefix="/v1/namespaces/{ns}/buckets/{bucket_id}/uploads")


def upload_view(u: BlobUpload, received_bytes: int | None = None) -> dict[str, Any]:
    return {
        "upload_id": u.id,
        "bucket_id": u.bucket_id,
        "filename": u.filename,
        "content_type": u.content_type,
        "size_bytes": u.size_bytes,
        "sha256": u.sha256,
        "status": u.status,
        "expires_at": u.expires_at,
        "uri": u.uri,
        "mime_type": u.mime_type,
        "verified_sha256": u.verified_sha256,
        "verified_at": u.verified_at,
        "created_at": u.created_at,
        **({"received_bytes": received_bytes} if u.status == "pending" else {}),
    }


async def get_upload(who: Principal, ns: str, bucket_id: str, upload_id: str) -> tuple[BucketDoc, BlobUpload]:
    _, bucket = await get_bucket(who, ns, bucket_id)
    upload = await BlobUpload.get(upload_id)
    if upload is None or upload.bucket_id != bucket.id:
        raise ApiError(404, f"upload {upload_id!r} not found in bucket {bucket_id!r}", "start with POST .../uploads")
    return bucket, upload


class CreateBlobUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=255, validation_alias=AliasChoices("content_type", "mime_type"))
    size_bytes: int = Field(validation_alias=AliasChoices("size_bytes", "file_size_bytes"))
    sha256: str | None = None


@router.post("", status_code=201)
async def create_upload(
    ns: str, bucket_id: str, body: CreateBlobUpload, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    sha256 = body.sha256.lower() if body.sha256 else None
    try:
        mime = check_request(
            body.content_type, body.size_bytes, sha256, bucket.bucket_schema["properties"], c.settings.max_blob_bytes
        )
    except UploadProblem as exc:
        raise ApiError(422, str(exc), exc.hint) from None
    upload_id = ids.new_id("upl")
    ttl = timedelta(seconds=c.settings.presigned_url_ttl_s)
    upload = BlobUpload(
        id=upload_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        bucket_id=bucket.id,
        filename=body.filename,
        content_type=mime,
        size_bytes=body.size_bytes,
        sha256=sha256,
        key=staging_key(upload_id),
        expires_at=now() + ttl,
    )
    await upload.insert()
    return {
        **upload_view(upload, 0),
        "presigned_url": await c.store.presigned_put(upload.key, ttl),
        "method": "PUT",
        "max_bytes": c.settings.max_blob_bytes,
    }


@router.get("/{upload_id}")
async def upload_status(
    ns: str, bucket_id: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    _, upload = await get_upload(who, ns, bucket_id, upload_id)
    received = await c.store.size(upload.key) if upload.status == "pending" else None
    return upload_view(upload, received or 0)


@router.post("/{upload_id}/confirm")
async def confirm_blob_upload(
    ns: str, bucket_id: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    """Verify the upload now (optional: adding an object that references it verifies it too)."""
    _, upload = await get_upload(who, ns, bucket_id, upload_id)
    try:
        await verify_upload(c.store, upload, c.settings.max_blob_bytes)
    except UploadProblem as exc:
        raise ApiError(422, f"upload {upload_id}: {exc}", exc.hint) from None
    return upload_view(upload)
