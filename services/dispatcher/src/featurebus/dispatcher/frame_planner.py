"""Turn a bucket snapshot and a batch's targets into frames (pure: no I/O).

One row per (object, blob) per collection and feature extractor, with exactly the columns of the
plugin guide's DataFrame Schema Reference (``FRAME_COLUMNS``), chunked into frames of the
extractor's ``compute_profile.batch_size``. Rows are ordered by object_id then blob_id and ids
are deterministic, so planning the same snapshot twice (a replayed trigger) gives the same
frames with the same ids, keys and bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from featurebus.common import ids
from featurebus.common.events import Blob, CollectionTarget, IngestedObject, PluginRef
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.dispatcher.object_rules import frame_mime_type

__all__ = ["PlanError", "PlannedFrame", "frame_id", "frame_key", "frame_row", "plan_frames"]


class PlanError(ValueError):
    """The batch's targets cannot be planned (the message names the target and the fix)."""


@dataclass(frozen=True)
class PlannedFrame:
    """The rows one plugin call of one collection receives."""

    frame_id: str
    frame_index: int
    collection_id: str
    plugin: PluginRef
    key: str  # object-store key of the frame's Parquet
    rows: tuple[dict[str, Any], ...]

    def to_dataframe(self) -> pd.DataFrame:
        """The frame as the DataFrame the plugin's ``__call__`` gets (FRAME_COLUMNS, in order)."""
        return pd.DataFrame(list(self.rows), columns=list(FRAME_COLUMNS)).astype(FRAME_COLUMNS)


def frame_id(batch_id: str, collection_id: str, plugin_id: str, frame_index: int) -> str:
    return ids.deterministic_id("frm", batch_id, collection_id, plugin_id, str(frame_index))


def frame_key(batch_id: str, collection_id: str, plugin_id: str, frame_index: int) -> str:
    return f"frames/{batch_id}/{collection_id}/{plugin_id}/{frame_index:05d}.parquet"


def frame_row(collection_id: str, plugin_id: str, obj: IngestedObject, blob: Blob) -> dict[str, Any]:
    """One row of the guide's DataFrame: raw text for text blobs, the s3:// URI otherwise.

    ``mime_type`` is the one the plugin's RowConditions route on (see ``frame_mime_type``) and
    ``size_bytes`` is the size of the bytes at the URI (0 for inline text, as the guide says).
    """
    is_text = blob.type == "text"
    return {
        "data": blob.data if is_text else blob.uri,
        "document_id": ids.document_id(collection_id, obj.object_id, blob.blob_id),
        "object_id": obj.object_id,
        "blob_id": blob.blob_id,
        "blob_property": blob.property,
        "blob_type": blob.type,
        "collection_id": collection_id,
        "feature_extractor_id": plugin_id,
        "mime_type": frame_mime_type(blob) or blob.mime_type,
        "size_bytes": 0 if is_text else blob.size_bytes,  # the guide: 0 for inline text
    }


def _check_targets(targets: Sequence[CollectionTarget]) -> None:
    if not targets:
        raise PlanError("the batch targets no collections: trigger it with at least one collection_id")
    seen_collections: set[str] = set()
    for target in targets:
        if target.collection_id in seen_collections:
            raise PlanError(f"collection {target.collection_id} is targeted twice: list each collection once")
        seen_collections.add(target.collection_id)
        if not target.feature_extractors:
            raise PlanError(
                f"collection {target.collection_id} has no feature extractors: add one to the collection's "
                "`feature_extractors` before triggering a batch"
            )
        plugin_ids = [p.plugin_id for p in target.feature_extractors]
        duplicates = sorted({p for p in plugin_ids if plugin_ids.count(p) > 1})
        if duplicates:
            raise PlanError(
                f"collection {target.collection_id} lists feature extractor(s) {duplicates} twice: "
                "list each extractor once"
            )


def plan_frames(
    batch_id: str, objects: Sequence[IngestedObject], targets: Sequence[CollectionTarget]
) -> list[PlannedFrame]:
    """All frames of a batch, in (collection, extractor, frame_index) order.

    Raises PlanError when the targets are unusable (no collections, a collection without
    extractors, duplicates). An empty ``objects`` gives no frames; the caller reports it.
    """
    _check_targets(targets)
    ordered = sorted(objects, key=lambda o: o.object_id)
    frames: list[PlannedFrame] = []
    for target in targets:
        cid = target.collection_id
        for plugin in target.feature_extractors:
            rows = [
                frame_row(cid, plugin.plugin_id, obj, blob)
                for obj in ordered
                for blob in sorted(obj.blobs, key=lambda b: b.blob_id)
            ]
            size = plugin.compute_profile.batch_size
            for index, start in enumerate(range(0, len(rows), size)):
                frames.append(
                    PlannedFrame(
                        frame_id=frame_id(batch_id, cid, plugin.plugin_id, index),
                        frame_index=index,
                        collection_id=cid,
                        plugin=plugin,
                        key=frame_key(batch_id, cid, plugin.plugin_id, index),
                        rows=tuple(rows[start : start + size]),
                    )
                )
    return frames
