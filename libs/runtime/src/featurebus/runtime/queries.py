"""What a plugin is given for a retriever query: a text, or a blob (an image, audio or video query).

A :data:`Query` is the text, or the blob's row fields as
:meth:`featurebus.common.queries.QueryBlob.row` gives them (``data``: its ``s3://`` URL,
``mime_type``, ``blob_type``, ``size_bytes``). The batch steps get it as one row of a frame, as
they get an object's text or blob (``batch["data"]`` the text or the URL, read with
``open_asset``); ``realtime.py`` gets the guide's inputs: ``{"text", "texts", "vector_index"}`` for
a text, ``{"<blob_type>": url, "url", "mime_type", "vector_index"}`` for a blob.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BLOB_FIELDS", "Query", "blob_uris", "is_query", "query_inputs", "query_row"]

Query = str | dict[str, Any]
BLOB_FIELDS = ("data", "mime_type", "blob_type", "size_bytes")


def is_query(value: Any) -> bool:
    """Whether ``value`` is a text or a blob's row fields (``data`` an ``s3://`` URL)."""
    if isinstance(value, str):
        return True
    return (
        isinstance(value, dict)
        and set(value) == set(BLOB_FIELDS)
        and isinstance(value["data"], str)
        and value["data"].startswith("s3://")
        and isinstance(value["mime_type"], str)
        and isinstance(value["blob_type"], str)
        and isinstance(value["size_bytes"], int)
    )


def blob_uris(queries: list[Query]) -> list[str]:
    """The ``s3://`` URLs of the blob queries (what the plugin may read while it embeds them)."""
    return [q["data"] for q in queries if isinstance(q, dict)]


def query_row(index: int, query: Query, plugin_id: str) -> dict[str, Any]:
    """The frame row of the ``index``-th query (its document_id ``query-<index>``)."""
    blob = query if isinstance(query, dict) else {"data": query, "mime_type": "text/plain", "blob_type": "text"}
    return {
        "data": blob["data"],
        "document_id": f"query-{index}",
        "object_id": "query",
        "blob_id": "query",
        "blob_property": "query",
        "blob_type": blob["blob_type"],
        "collection_id": "",
        "feature_extractor_id": plugin_id,
        "mime_type": blob["mime_type"],
        "size_bytes": int(blob.get("size_bytes", 0)),
    }


def query_inputs(query: Query, feature_name: str) -> dict[str, Any]:
    """What ``realtime.py`` receives for a retriever query (the guide's "What realtime.py Receives")."""
    if isinstance(query, str):
        return {"text": query, "texts": [query], "vector_index": feature_name}
    url = query["data"]
    return {query["blob_type"]: url, "url": url, "mime_type": query["mime_type"], "vector_index": feature_name}
