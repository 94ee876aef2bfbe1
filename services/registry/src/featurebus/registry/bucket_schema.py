"""A bucket's schema and the blobs of an object checked against it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from featurebus.common.events import Blob
from featurebus.common.media_types import BINARY_BLOB_TYPES, blob_type_of, fits
from featurebus.registry.upload_checks import StoredBlob

__all__ = ["BLOB_TYPES", "BlobRequest", "SchemaError", "build_blobs", "check_schema", "parse_blobs", "to_blobs"]

BLOB_TYPES = {"text": "text/plain", **BINARY_BLOB_TYPES}  # a property's type → the MIME types it takes


_PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


class SchemaError(ValueError):
    """A body that does not fit the schema. The message starts with the field it names
    (``blobs[0].property ...``), unless ``of_object``: then it is about the object as a whole."""

    def __init__(self, message: str, hint: str | None = None, of_object: bool = False) -> None:
        super().__init__(message)
        self.hint, self.of_object = hint, of_object


def check_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """``{"properties": {name: {"type": ..., "required": bool}}}`` → the properties, validated."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        raise SchemaError(
            'bucket_schema.properties must map property names to {"type": ...}',
            '{"bucket_schema": {"properties": {"text": {"type": "text", "required": true}}}}',
        )
    for name, spec in properties.items():
        if not _PROPERTY_NAME.match(name):
            raise SchemaError(
                f"bucket_schema.properties: {name[:64]!r} is not a property name",
                "use letters, digits, _ and -, starting with a letter or _, at most 64 characters",
            )
        if not isinstance(spec, dict):
            raise SchemaError(f'bucket_schema.properties.{name} must be an object like {{"type": "text"}}')
        kind = spec.get("type")
        if not isinstance(kind, str) or kind not in BLOB_TYPES:
            shown = kind if isinstance(kind, str | None) else type(kind).__name__
            raise SchemaError(
                f"bucket_schema.properties.{name}.type must be one of {sorted(BLOB_TYPES)} (got {shown!r})"
            )
        if not isinstance(spec.get("required", False), bool):
            raise SchemaError(f"bucket_schema.properties.{name}.required must be true or false")
    return properties


@dataclass(frozen=True)
class BlobRequest:
    """One checked entry of an object's ``blobs``: inline text, or a reference to an upload."""

    index: int
    property: str
    type: str
    data: str | None = None
    upload_id: str | None = None


def _binary_blob(i: int, blob: dict[str, Any], prop: str, kind: str) -> BlobRequest:
    upload_id = blob.get("upload_id")
    if isinstance(upload_id, str) and upload_id:
        return BlobRequest(i, prop, kind, upload_id=upload_id)
    got = "inline data" if "data" in blob else "a uri" if "uri" in blob or "url" in blob else "no upload_id"
    raise SchemaError(
        f"blobs[{i}]: {kind} blobs reference their uploaded bytes by upload_id (got {got})",
        "POST .../buckets/{bucket_id}/uploads with filename, content_type and size_bytes, PUT the file to "
        f'the presigned_url it returns, then send {{"property": "{prop}", "type": "{kind}", "upload_id": "..."}}',
    )


def parse_blobs(blobs: Any, properties: dict[str, dict[str, Any]], max_text_bytes: int) -> list[BlobRequest]:
    """Check an object's ``blobs`` against the bucket's properties (uploads are checked by the caller)."""
    if isinstance(blobs, dict):
        raise SchemaError(
            "blobs must be a list, not an object",
            'send "blobs": [{"property": "text", "type": "text", "data": "..."}]',
        )
    if not isinstance(blobs, list) or not blobs:
        raise SchemaError(
            "blobs must be a non-empty list", 'send "blobs": [{"property": ..., "type": ..., "data": ...}]'
        )
    out: list[BlobRequest] = []
    for i, blob in enumerate(blobs):
        if not isinstance(blob, dict):
            raise SchemaError(f"blobs[{i}] must be an object with property, type and data (or upload_id)")
        prop = blob.get("property")
        if not isinstance(prop, str):
            raise SchemaError(
                f"blobs[{i}].property must be the name of a property (a string); the bucket's properties are "
                f"{sorted(properties)}"
            )
        if prop not in properties:
            raise SchemaError(
                f"blobs[{i}].property {prop!r} is not in the bucket's schema; its properties are {sorted(properties)}"
            )
        kind = blob.get("type", properties[prop]["type"])
        if kind != properties[prop]["type"]:
            raise SchemaError(
                f"blobs[{i}].type {kind!r} does not match the schema: {prop!r} is {properties[prop]['type']!r}"
            )
        if kind != "text":
            out.append(_binary_blob(i, blob, prop, kind))
            continue
        data = blob.get("data")
        if not isinstance(data, str):
            raise SchemaError(f"blobs[{i}].data must be a string for a text blob")
        if len(data.encode()) > max_text_bytes:
            raise SchemaError(
                f"blobs[{i}].data is {len(data.encode())} bytes; inline text is limited to {max_text_bytes}"
            )
        out.append(BlobRequest(i, prop, "text", data=data))
    missing = [p for p, spec in properties.items() if spec.get("required") and p not in {b.property for b in out}]
    if missing:
        raise SchemaError(f"required properties missing from blobs: {missing}", of_object=True)
    return out


def build_blobs(
    object_id: str, requests: list[BlobRequest], blob_id: Any, uploads: Mapping[str, StoredBlob]
) -> list[Blob]:
    """The Blob events of checked blobs; ``uploads`` holds the verified upload of every upload_id."""
    out: list[Blob] = []
    for r in requests:
        bid = blob_id(object_id, r.property, r.index)
        if r.upload_id is None:
            out.append(Blob(blob_id=bid, property=r.property, type="text", data=r.data, mime_type="text/plain"))
            continue
        stored = uploads.get(r.upload_id)
        if stored is None:
            raise SchemaError(f"blobs[{r.index}].upload_id {r.upload_id!r} is not a verified upload of this bucket")
        if not fits(r.type, stored.mime_type):
            raise SchemaError(
                f"blobs[{r.index}]: upload {r.upload_id} is {stored.mime_type}, which property {r.property!r} "
                f"cannot hold: it is of type {r.type!r} and takes {BLOB_TYPES[r.type]}",
                f"reference it from a property of type {blob_type_of(stored.mime_type)!r}, or upload a "
                f"{BLOB_TYPES[r.type]} file for {r.property!r}",
            )
        out.append(
            Blob(
                blob_id=bid,
                property=r.property,
                type=r.type,  # type: ignore[arg-type]  # one of BLOB_TYPES, checked by parse_blobs
                uri=stored.uri,
                mime_type=stored.mime_type,
                size_bytes=stored.size_bytes,
                sha256=stored.sha256,
            )
        )
    return out


def to_blobs(
    object_id: str,
    blobs: Any,
    properties: dict[str, dict[str, Any]],
    max_text_bytes: int,
    blob_id: Any,
    uploads: Mapping[str, StoredBlob] | None = None,
) -> list[Blob]:
    """Validate an object's ``blobs`` against the bucket's properties; return them as Blob events."""
    return build_blobs(object_id, parse_blobs(blobs, properties, max_text_bytes), blob_id, uploads or {})
