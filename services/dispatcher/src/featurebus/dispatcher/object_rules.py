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

__all__ = ["InvalidObjectsError", "RejectedObject", "blob_problems", "object_problems", "split_valid"]


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
    return []


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
