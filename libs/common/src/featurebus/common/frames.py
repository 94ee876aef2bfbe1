"""Batch frames and vector sets as Parquet bytes.

A *frame* holds the rows one plugin call receives: exactly the columns of the guide's DataFrame
Schema Reference (``FRAME_COLUMNS``). A *vector set* holds what inference produced for the rows
that succeeded: ids, one list<float32> column per feature, and the rest of the plugin's output as
a JSON ``payload``.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FRAME_COLUMNS", "VECTOR_ID_COLUMNS", "from_parquet", "to_parquet"]

FRAME_COLUMNS: dict[str, str] = {
    "data": "str",  # raw text for text blobs, an s3:// URL for binary blobs
    "document_id": "str",
    "object_id": "str",
    "blob_id": "str",
    "blob_property": "str",
    "blob_type": "str",
    "collection_id": "str",
    "feature_extractor_id": "str",
    "mime_type": "str",
    "size_bytes": "int64",
}

VECTOR_ID_COLUMNS = ("document_id", "object_id", "blob_id", "blob_property", "payload")


def to_parquet(df: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buffer, compression="zstd")
    return buffer.getvalue()


def from_parquet(data: bytes) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(data)).to_pandas()
