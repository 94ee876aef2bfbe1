"""Binary blob uploads: where their bytes live and what makes them acceptable (pure: no I/O).

A client asks for an upload (filename, content_type, size_bytes, optional sha256), PUTs the bytes
to a presigned URL, and references the ``upload_id`` from an object's blobs. Before the first
reference the registry *verifies* the upload: it copies the bytes out of the presigned key (so a
second PUT to the still-valid URL cannot change what was checked) to the blob's final key and
checks the copy with :func:`check_stored`. A verified upload is immutable and may be referenced by
any number of objects and properties of its bucket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from featurebus.common.media_types import BINARY_BLOB_TYPES, blob_type_of, normalize_mime
from featurebus.registry.magic_numbers import sniff

__all__ = [
    "StoredBlob",
    "UploadProblem",
    "blob_key",
    "check_request",
    "check_stored",
    "safe_filename",
    "staging_key",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ACCEPTED = ", ".join(BINARY_BLOB_TYPES.values())


class UploadProblem(ValueError):
    """An upload that cannot be accepted; the message names the field, the hint the fix."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class StoredBlob:
    """A verified upload: what a Blob event says about its bytes."""

    upload_id: str
    uri: str
    mime_type: str
    size_bytes: int
    sha256: str


def staging_key(upload_id: str) -> str:
    """Where the presigned URL writes (the client may PUT there again until it expires)."""
    return f"uploads/blobs/{upload_id}"


def safe_filename(filename: str) -> str:
    """A file name fit for an object key: its base name, with only ``A-Z a-z 0-9 . _ -``."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE.sub("_", base).strip("._")[-100:]
    return cleaned or "blob"


def blob_key(org_id: str, namespace_id: str, bucket_id: str, upload_id: str, filename: str) -> str:
    """The verified blob's key; it keeps the file name so that plugins can go by its extension."""
    return f"blobs/{org_id}/{namespace_id}/{bucket_id}/{upload_id}/{safe_filename(filename)}"


def check_request(
    content_type: str, size_bytes: int, sha256: str | None, properties: dict[str, dict[str, Any]], max_bytes: int
) -> str:
    """Check an upload request against the bucket's schema and the size limit; the normalised content_type."""
    mime = normalize_mime(content_type)
    kind = blob_type_of(mime)
    if kind is None:
        hint = (
            'text is sent inline: "blobs": [{"property": ..., "type": "text", "data": "..."}]'
            if mime.startswith("text/")
            else "give the file's MIME type, e.g. image/jpeg, audio/mpeg, video/mp4 or application/pdf"
        )
        raise UploadProblem(f"content_type {content_type!r} is not an uploadable blob type; accepted: {ACCEPTED}", hint)
    binary = sorted(p for p, spec in properties.items() if spec.get("type") in BINARY_BLOB_TYPES)
    if not any(spec.get("type") == kind for spec in properties.values()):
        raise UploadProblem(
            f"content_type {mime!r} is {kind}, but this bucket has no {kind} property "
            f"(its binary properties: {binary or 'none'})",
            f'upload to a bucket whose bucket_schema has a property of "type": "{kind}"',
        )
    if size_bytes <= 0:
        raise UploadProblem(
            "size_bytes must be the file's size in bytes, at least 1", "send size_bytes: the exact length of the file"
        )
    if size_bytes > max_bytes:
        raise UploadProblem(
            f"size_bytes {size_bytes} exceeds the limit of {max_bytes} bytes per blob",
            "send a smaller file (the operator sets the limit with FEATUREBUS_MAX_BLOB_BYTES)",
        )
    if sha256 is not None and not _SHA256.match(sha256):
        raise UploadProblem(
            "sha256 must be 64 hex digits (the SHA-256 of the file) or left out",
            "send the output of `sha256sum FILE`, or no sha256 at all",
        )
    return mime


def check_stored(
    *,
    content_type: str,
    declared_size: int,
    declared_sha256: str | None,
    size: int,
    sha256: str,
    head: bytes,
    max_bytes: int,
) -> str:
    """Check the bytes the client PUT against its request; the blob's MIME type (sniffed when known)."""
    again = "PUT the whole file to presigned_url again (before expires_at), or create a new upload"
    if size == 0:
        raise UploadProblem("the uploaded file is empty", again)
    if size > max_bytes:
        raise UploadProblem(f"the uploaded file has {size} bytes; the limit is {max_bytes} bytes per blob", again)
    if size != declared_size:
        raise UploadProblem(
            f"the uploaded file has {size} bytes but size_bytes said {declared_size}: "
            "the upload was cut short or another file was sent",
            again,
        )
    if declared_sha256 is not None and sha256 != declared_sha256:
        raise UploadProblem(
            f"the uploaded file's sha256 is {sha256}, not the {declared_sha256} that was declared", again
        )
    kind = blob_type_of(content_type)
    found = sniff(head)
    if found is not None and kind not in found.blob_types:
        raise UploadProblem(
            f"the uploaded bytes are {found.mime} (by their first bytes), not {content_type} as content_type said",
            f"upload a {kind} file, or create an upload whose content_type is {found.mime}",
        )
    if kind == "pdf" and found is None:
        raise UploadProblem("the uploaded file is not a PDF: it has no %PDF- header in its first 1024 bytes", again)
    # A recognised single format says exactly what the bytes are (image/jpg → image/jpeg); for
    # containers of sound or pictures (MP4, WebM, Ogg) the declared type says which one it is.
    return found.mime if found is not None and len(found.blob_types) == 1 else content_type
