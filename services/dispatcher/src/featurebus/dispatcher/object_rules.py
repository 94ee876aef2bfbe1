"""What makes an ingested object storable (pure: no I/O).

A text blob carries its text inline in ``data``; every other blob type (image, video, audio,
pdf, document, binary) carries an ``s3://`` ``uri`` of its uploaded bytes, because a frame's
``data`` column is "raw text for text blobs, an s3:// URL for binary blobs" (the plugin guide's
DataFrame Schema Reference) and a frame never holds raw bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from featurebus.common.events import Blob, IngestedObject
from featurebus.common.media_types import BINARY_BLOB_TYPES, fits, guess_mime

__all__ = [
    "InvalidObjectsError",
    "RejectedObject",
    "blob_problems",
    "frame_mime_type",
    "object_problems",
    "split_valid",
]


@dataclass(frozen=True)
class RejectedObject:
    object_id: str
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"object {self.object_id}: " + "; ".join(self.problems)


class InvalidObjectsError(ValueError):
    """Some objects of an ObjectsIngested message cannot be stored; the message says which and why.

    Raised *after* the valid objects of the same message were stored, so that the Bus dead-letters
    the message with this error (the DLQ keeps the full message for a replay once it is fixed;
    replaying re-stores the valid objects idempotently).
    """

    def __init__(self, bucket_id: str, rejected: Sequence[RejectedObject]) -> None:
        self.bucket_id = bucket_id
        self.rejected = list(rejected)
        details = " | ".join(str(r) for r in self.rejected)
        super().__init__(f"bucket {bucket_id}: {len(self.rejected)} object(s) rejected: {details}")


def blob_problems(blob: Blob) -> list[str]:
    """Why one blob cannot become a frame row (empty when it can), each naming the field and fix."""
    where = f"blob {blob.blob_id} (property {blob.property!r}, type {blob.type})"
    if blob.type == "text":
        if blob.data is None:
            return [f"{where}: a text blob needs its text in `data` (inline); got data=None"]
        return []
    if not blob.uri:
        return [
            f"{where}: a {blob.type} blob needs `uri` set to the s3:// URI of its uploaded bytes "
            "(upload through the presigned URL first); inline `data` is only for text blobs"
        ]
    if not blob.uri.startswith("s3://") or len(blob.uri) <= len("s3://") or "/" not in blob.uri[5:]:
        return [f"{where}: `uri` must look like s3://bucket/key; got {blob.uri!r}"]
    problems = []
    if frame_mime_type(blob) is None:
        # A plugin routes rows by mime_type (RowCondition.IS_IMAGE is "image/..."); the event's
        # default, text/plain, would send an image row to the plugin's text steps.
        accepted = BINARY_BLOB_TYPES.get(blob.type, "type/subtype")
        problems.append(
            f"{where}: `mime_type` {blob.mime_type!r} does not fit its type {blob.type!r} and none can be "
            f"guessed from the uri's extension: set mime_type ({accepted})"
        )
    if blob.size_bytes < 0:
        problems.append(f"{where}: `size_bytes` must be the size of the bytes at uri, not {blob.size_bytes}")
    return problems


def frame_mime_type(blob: Blob) -> str | None:
    """The blob's MIME type as its frame row carries it, or None when it does not fit the blob type.

    Text rows are ``text/...``; a binary blob keeps its ``mime_type`` when that fits its type, and
    otherwise gets one guessed from its URI's extension (``.../cat.jpg`` → ``image/jpeg``).
    """
    if blob.type == "text":
        return blob.mime_type if fits("text", blob.mime_type) else "text/plain"
    if fits(blob.type, blob.mime_type):
        return blob.mime_type
    return guess_mime(blob.type, blob.uri)


def object_problems(obj: IngestedObject) -> list[str]:
    """Why one object cannot be stored (empty when it can)."""
    if not obj.blobs:
        return ["has no blobs: send at least one entry in `blobs`"]
    problems: list[str] = []
    seen: set[str] = set()
    for blob in obj.blobs:
        if blob.blob_id in seen:
            # Two blobs with one id would produce one document id and overwrite each other.
            problems.append(f"blob_id {blob.blob_id!r} appears twice: blob ids must be unique per object")
        seen.add(blob.blob_id)
        problems.extend(blob_problems(blob))
    return problems


def split_valid(objects: Sequence[IngestedObject]) -> tuple[list[IngestedObject], list[RejectedObject]]:
    """Separate the storable objects from the rejected ones (with their reasons), keeping order."""
    valid: list[IngestedObject] = []
    rejected: list[RejectedObject] = []
    for obj in objects:
        problems = object_problems(obj)
        if problems:
            rejected.append(RejectedObject(obj.object_id, tuple(problems)))
        else:
            valid.append(obj)
    return valid, rejected
