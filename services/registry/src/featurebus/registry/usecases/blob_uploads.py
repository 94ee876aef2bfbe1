"""Binary blob uploads into a bucket: presigned URL → PUT → verified bytes that objects reference.

See :mod:`featurebus.registry.upload_checks` for the rules. Verifying (on confirm, or when an object
first references the upload) copies the bytes out of the presigned key, so that a second PUT to
the still-valid URL cannot change what was checked, to the blob's immutable key, checks the copy
and records what it found with a compare-and-set on ``status="pending"``. Two verifications of
one fresh upload at once (two objects referencing it) copy the same bytes to the same key; the one
that records second returns what the first recorded. A failed check deletes the copy and leaves
the upload pending, so that the client can PUT the right bytes and try again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from featurebus.common import ids
from featurebus.common.objectstore import ObjectMissing
from featurebus.registry.auth import Principal
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Invalid, NotFound
from featurebus.registry.magic_numbers import HEAD_BYTES
from featurebus.registry.records import BlobUpload, now
from featurebus.registry.upload_checks import (
    StoredBlob,
    UploadProblem,
    blob_key,
    check_request,
    check_stored,
    staging_key,
)
from featurebus.registry.usecases.buckets import namespace_bucket

__all__ = ["confirm_blob_upload", "create_blob_upload", "get_blob_upload", "stored_blob", "verify_upload"]

log = logging.getLogger("featurebus.registry.uploads")


async def create_blob_upload(
    c: Ctx,
    who: Principal,
    ns: str,
    bucket_id: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    sha256: str | None = None,
) -> tuple[BlobUpload, str]:
    """A pending upload and the presigned URL to PUT its bytes to; Invalid (naming the field) unless
    the bucket has a property of the content_type's kind and the size is within the limit."""
    namespace, bucket = await namespace_bucket(c, who, ns, bucket_id)
    sha256 = sha256.lower() if sha256 else None
    properties = bucket.bucket_schema["properties"]
    try:
        mime = check_request(content_type, size_bytes, sha256, properties, c.settings.max_blob_bytes)
    except UploadProblem as exc:
        raise Invalid(str(exc), exc.hint) from None
    upload_id = ids.new_id("upl")
    ttl = timedelta(seconds=c.settings.presigned_url_ttl_s)
    upload = BlobUpload(
        id=upload_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        bucket_id=bucket.id,
        filename=filename,
        content_type=mime,
        size_bytes=size_bytes,
        sha256=sha256,
        key=staging_key(upload_id),
        expires_at=now() + ttl,
    )
    await c.tables.blob_uploads.insert(upload)
    return upload, await c.store.presigned_put(upload.key, ttl)


async def get_blob_upload(
    c: Ctx, who: Principal, ns: str, bucket_id: str, upload_id: str
) -> tuple[BlobUpload, int | None]:
    """The upload and, while it is pending, how many bytes were PUT so far (0 before any)."""
    upload = await _upload(c, who, ns, bucket_id, upload_id)
    if upload.status != "pending":
        return upload, None
    return upload, await c.store.size(upload.key) or 0


async def confirm_blob_upload(c: Ctx, who: Principal, ns: str, bucket_id: str, upload_id: str) -> BlobUpload:
    """Verify the upload now (optional: an object that references it verifies it too)."""
    upload = await _upload(c, who, ns, bucket_id, upload_id)
    try:
        return await verify_upload(c, upload)
    except UploadProblem as exc:
        raise Invalid(f"upload {upload_id}: {exc}", exc.hint) from None


async def _upload(c: Ctx, who: Principal, ns: str, bucket_id: str, upload_id: str) -> BlobUpload:
    _, bucket = await namespace_bucket(c, who, ns, bucket_id)
    upload = await c.tables.blob_uploads.find_one(id=upload_id, bucket_id=bucket.id)
    if upload is None:
        raise NotFound(f"upload {upload_id!r} not found in bucket {bucket_id!r}", "start with POST .../uploads")
    return upload


def stored_blob(upload: BlobUpload) -> StoredBlob:
    """What a Blob event says about a verified upload's bytes."""
    assert upload.uri and upload.mime_type and upload.verified_sha256, "only a verified upload is a stored blob"
    return StoredBlob(upload.id, upload.uri, upload.mime_type, upload.size_bytes, upload.verified_sha256)


async def verify_upload(c: Ctx, upload: BlobUpload) -> BlobUpload:
    """The upload, verified (verifying it first if needed); UploadProblem saying what is wrong otherwise."""
    if upload.status == "verified":
        return upload
    final = blob_key(upload.org_id, upload.namespace_id, upload.bucket_id, upload.id, upload.filename)
    try:
        await c.store.copy(upload.key, final)
    except ObjectMissing:
        # Nothing was PUT, or a concurrent verification got there first (and deleted the staging copy).
        return await _verified_meanwhile(c, upload)
    found = await c.store.digest(final, HEAD_BYTES)
    if found is None:
        raise UploadProblem("the uploaded file disappeared while it was checked", "add the object again")
    size, sha256, head = found
    try:
        mime = check_stored(
            content_type=upload.content_type,
            declared_size=upload.size_bytes,
            declared_sha256=upload.sha256,
            size=size,
            sha256=sha256,
            head=head,
            max_bytes=c.settings.max_blob_bytes,
        )
    except UploadProblem:
        await c.store.delete(final)
        raise
    changes = {
        "status": "verified",
        "uri": c.store.uri(final),
        "mime_type": mime,
        "verified_sha256": sha256,
        "verified_at": now(),
    }
    recorded = await c.tables.blob_uploads.update(upload.id, changes, status="pending")
    await c.store.delete(upload.key)  # the verified copy is the blob; later PUTs to the URL are ignored
    if not recorded:  # a concurrent verification recorded first: what it found stands
        winner = await _verified_meanwhile(c, upload)
        if winner.verified_sha256 != sha256:
            log.warning("upload %s: its bytes changed while two verifications ran; %s may not match", upload.id, final)
        return winner
    log.info("upload %s verified: %s (%s, %d bytes)", upload.id, changes["uri"], mime, size)
    return upload.model_copy(update=changes)


async def _verified_meanwhile(c: Ctx, upload: BlobUpload) -> BlobUpload:
    """The upload as another verification recorded it; UploadProblem if none did."""
    fresh = await c.tables.blob_uploads.get(upload.id)
    if fresh is not None and fresh.status == "verified":
        return fresh
    if now() > upload.expires_at:
        raise UploadProblem(
            f"nothing was uploaded before presigned_url expired at {upload.expires_at.isoformat()}",
            "create a new upload (POST .../uploads) and PUT the file to its presigned_url",
        )
    raise UploadProblem(
        "no file was uploaded yet: nothing was PUT to presigned_url",
        "PUT the file's bytes to presigned_url first, then add the object",
    )
