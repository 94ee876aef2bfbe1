"""``/v1/namespaces/{ns}/buckets/{bucket_id}/uploads``: binary blob uploads (presigned URL → PUT →
reference the upload_id from an object), their status, and confirming one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.records import BlobUpload
from featurebus.registry.usecases import blob_uploads

router = APIRouter(prefix="/v1/namespaces/{ns}/buckets/{bucket_id}/uploads")


class CreateBlobUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=255, validation_alias=AliasChoices("content_type", "mime_type"))
    size_bytes: int = Field(validation_alias=AliasChoices("size_bytes", "file_size_bytes"))
    sha256: str | None = None


class BlobUploadView(BaseModel):
    upload_id: str
    bucket_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str | None
    status: str
    expires_at: datetime
    uri: str | None
    mime_type: str | None
    verified_sha256: str | None
    verified_at: datetime | None
    created_at: datetime
    received_bytes: int | None = Field(default=None, description="bytes PUT so far; only while pending")

    @model_serializer(mode="wrap")
    def _received_while_pending(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.status != "pending":
            out.pop("received_bytes", None)
        return out

    @classmethod
    def of(cls, u: BlobUpload, received_bytes: int | None = None) -> BlobUploadView:
        return cls(
            upload_id=u.id,
            received_bytes=received_bytes,
            **u.model_dump(exclude={"id", "org_id", "namespace_id", "key"}),
        )


class CreatedBlobUploadView(BlobUploadView):
    presigned_url: str
    method: str = "PUT"
    max_bytes: int


@router.post("", status_code=201)
async def create_upload(
    ns: str, bucket_id: str, body: CreateBlobUpload, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> CreatedBlobUploadView:
    upload, url = await blob_uploads.create_blob_upload(
        c, who, ns, bucket_id, body.filename, body.content_type, body.size_bytes, body.sha256
    )
    return CreatedBlobUploadView(
        **BlobUploadView.of(upload, 0).model_dump(), presigned_url=url, max_bytes=c.settings.max_blob_bytes
    )


@router.get("/{upload_id}")
async def upload_status(
    ns: str, bucket_id: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BlobUploadView:
    return BlobUploadView.of(*await blob_uploads.get_blob_upload(c, who, ns, bucket_id, upload_id))


@router.post("/{upload_id}/confirm")
async def confirm_blob_upload(
    ns: str, bucket_id: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BlobUploadView:
    """Verify the upload now (optional: adding an object that references it verifies it too)."""
    return BlobUploadView.of(await blob_uploads.confirm_blob_upload(c, who, ns, bucket_id, upload_id))
