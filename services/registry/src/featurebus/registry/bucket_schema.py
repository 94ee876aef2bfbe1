"""A bucket's schema and the blobs of an object checked against it."""

from __future__ import annotations

from typing import Any

from featurebus.common.events import Blob

__all__ = ["BLOB_TYPES", "SchemaError", "check_schema", "to_blobs"]

BLOB_TYPES = {
    "text": "text/plain",
    "image": "image/*",
    "video": "video/*",
    "audio": "audio/*",
    "pdf": "application/pdf",
}


class SchemaError(ValueError):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def check_schema(schema: Any) -> dict[str, dict[str, Any]]:
    """``{"properties": {name: {"type": ..., "required": bool}}}`` → the properties, validated."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or not properties:
        raise SchemaError(
            'bucket_schema.properties must map property names to {"type": ...}',
            '{"bucket_schema": {"properties": {"text": {"type": "text", "required": true}}}}',
        )
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in BLOB_TYPES:
            raise SchemaError(
                f"bucket_schema.properties.{name}.type must be one of {sorted(BLOB_TYPES)} (got {kind!r})"
            )
    return properties


def to_blobs(
    object_id: str, blobs: Any, properties: dict[str, dict[str, Any]], max_text_bytes: int, blob_id: Any
) -> list[Blob]:
    """Validate an object's ``blobs`` against the bucket's properties; return them as Blob events."""
    if isinstance(blobs, dict):
        raise SchemaError(
            "blobs must be a list, not an object",
            'send "blobs": [{"property": "text", "type": "text", "data": "..."}]',
        )
    if not isinstance(blobs, list) or not blobs:
        raise SchemaError(
            "blobs must be a non-empty list", 'send "blobs": [{"property": ..., "type": ..., "data": ...}]'
        )
    out: list[Blob] = []
    for i, blob in enumerate(blobs):
        if not isinstance(blob, dict):
            raise SchemaError(f"blobs[{i}] must be an object with property, type and data")
        prop = blob.get("property")
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
            raise SchemaError(
                f"blobs[{i}]: {kind} blobs are not accepted yet; this installation ingests text blobs",
                "send text blobs with the text in data",
            )
        data = blob.get("data")
        if not isinstance(data, str):
            raise SchemaError(f"blobs[{i}].data must be a string for a text blob")
        if len(data.encode()) > max_text_bytes:
            raise SchemaError(
                f"blobs[{i}].data is {len(data.encode())} bytes; inline text is limited to {max_text_bytes}"
            )
        out.append(
            Blob(blob_id=blob_id(object_id, prop, i), property=prop, type="text", data=data, mime_type="text/plain")
        )
    missing = [p for p, spec in properties.items() if spec.get("required") and p not in {b.property for b in out}]
    if missing:
        raise SchemaError(f"required properties missing from blobs: {missing}")
    return out
