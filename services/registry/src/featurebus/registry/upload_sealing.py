"""Verify a blob upload: copy its bytes to their immutable key, check the copy, record the outcome.

See :mod:`featurebus.registry.upload_checks` for the rules. Verifying is idempotent and safe to run
concurrently (two objects referencing one fresh upload at once): both copy to the same key and
record the same facts. A failed check deletes the copy and leaves the upload pending, so that the
client can PUT the right bytes and reference it again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from featurebus.common.objectstore import ObjectStore
from featurebus.registry.documents import BlobUpload, now
from featurebus.registry.magic_numbers import HEAD_BYTES
from featurebus.registry.upload_checks import StoredBlob, UploadProblem, blob_key, check_stored

__all__ = ["stored_blob", "verify_upload"]

log = logging.getLogger("featurebus.registry.uploads")


def _aware(when: datetime) -> datetime:
    """MongoDB gives back naive datetimes; every datetime the registry stores is UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def stored_blob(upload: BlobUpload) -> StoredBlob:
    assert upload.uri and upload.mime_type and upload.verified_sha256, "only a verified upload is a stored blob"
    return StoredBlob(upload.id, upload.uri, upload.mime_type, upload.size_bytes, upload.verified_sha256)


async def _verified_meanwhile(upload_id: str) -> StoredBlob | None:
    fresh = await BlobUpload.get(upload_id)
    return stored_blob(fresh) if fresh is not None and fresh.status == "verified" else None


async def verify_upload(store: ObjectStore, upload: BlobUpload, max_bytes: int) -> StoredBlob:
    """The upload's verified blob; verifies it first if needed. Raises UploadProblem (→ 422)."""
    if upload.status == "verified":
        return stored_blob(upload)
    final = blob_key(upload.org_id, upload.namespace_id, upload.bucket_id, upload.id, upload.filename)
    copied = await store.size(upload.key) is not None
    if copied:
        try:
            await store.copy(upload.key, final)
        except Exception:
            # The staging object vanished in between: a concurrent reference verified it (and
            # deleted it), or it really is gone; the document says which.
            copied = False
    if not copied:
        done = await _verified_meanwhile(upload.id)
        if done is not None:
            return done
        if now() > _aware(upload.expires_at):
            raise UploadProblem(
                f"nothing was uploaded before presigned_url expired at {upload.expires_at.isoformat()}",
                "create a new upload (POST .../uploads) and PUT the file to its presigned_url",
            )
        raise UploadProblem(
            "no file was uploaded yet: nothing was PUT to presigned_url",
            "PUT the file's bytes to presigned_url first, then add the object",
        )
    found = await store.digest(final, HEAD_BYTES)
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
            max_bytes=max_bytes,
        )
    except UploadProblem:
        await store.delete(final)
        raise
    upload.status, upload.uri, upload.mime_type = "verified", store.uri(final), mime
    upload.verified_sha256, upload.verified_at = sha256, now()
    await upload.save()
    await store.delete(upload.key)  # the verified copy is the blob; later PUTs to the URL are ignored
    log.info("upload %s verified: %s (%s, %d bytes)", upload.id, upload.uri, mime, size)
    return stored_blob(upload)
