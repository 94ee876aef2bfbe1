"""Which MIME types fit which blob type, shared by the registry (uploads) and the dispatcher (frames).

A blob's ``type`` is the bucket schema's word (``image``, ``audio``, ``video``, ``pdf``, ``text``);
its ``mime_type`` is what a plugin's ``RowCondition`` (``IS_IMAGE`` = ``image/...``) routes on, so
the two must agree: an image row that says ``text/plain`` would be sent to the plugin's text steps.
"""

from __future__ import annotations

import mimetypes
from urllib.parse import urlparse

__all__ = ["BINARY_BLOB_TYPES", "blob_type_of", "fits", "guess_mime", "normalize_mime"]

# blob type → the MIME types it accepts, as shown to users ("image/*").
BINARY_BLOB_TYPES: dict[str, str] = {
    "image": "image/*",
    "audio": "audio/*",
    "video": "video/*",
    "pdf": "application/pdf",
}
# Blob types of the event model that take any MIME type (producers publishing to Kafka directly).
_ANY_MIME = frozenset({"document", "binary"})


def normalize_mime(mime: str | None) -> str:
    """``Image/PNG; q=1`` → ``image/png``; ``""`` for nothing."""
    return (mime or "").split(";", 1)[0].strip().lower()


def blob_type_of(mime: str | None) -> str | None:
    """The binary blob type a MIME type belongs to (``image/png`` → ``image``), or None."""
    mime = normalize_mime(mime)
    if mime == "application/pdf":
        return "pdf"
    major, _, minor = mime.partition("/")
    return major if major in ("image", "audio", "video") and minor else None


def fits(blob_type: str, mime: str | None) -> bool:
    """Whether a blob of ``blob_type`` may carry ``mime`` (``text`` takes ``text/...``)."""
    mime = normalize_mime(mime)
    if blob_type == "text":
        return mime.startswith("text/")
    if blob_type in _ANY_MIME:
        return "/" in mime
    return blob_type_of(mime) == blob_type


def guess_mime(blob_type: str, uri: str | None) -> str | None:
    """A MIME type for a blob from its URI's file extension, if that fits ``blob_type``."""
    path = urlparse(uri or "").path
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed if guessed and fits(blob_type, guessed) else None
