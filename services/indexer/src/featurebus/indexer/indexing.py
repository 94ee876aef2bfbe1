"""Write one frame's vectors to Qdrant and account for every row."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from featurebus.common import ids
from featurebus.common.cancellations import CancelledBatches
from featurebus.common.events import BatchIndexed, ReasonCode, RowFailure, VectorsProduced
from featurebus.common.frames import VECTOR_ID_COLUMNS, from_parquet
from featurebus.common.kafka import TransientError
from featurebus.common.waiting import Waits
from featurebus.indexer.qdrant_index import IndexPoint, QdrantIndex, collection_name
from featurebus.indexer.vector_schema import check_vectors, row_failure

__all__ = ["CollectionNotReady", "VectorReader", "VectorRow", "VectorSetIndexer", "read_vector_set"]

log = logging.getLogger("featurebus.indexer")

_REQUIRED_COLUMNS = ("document_id", "object_id")


class VectorReader(Protocol):
    """The part of :class:`featurebus.common.objectstore.ObjectStore` the indexer uses."""

    async def get_bytes(self, uri: str, sha256: str | None = None) -> bytes: ...


class CollectionNotReady(TransientError):
    """Vectors arrived for a collection Qdrant does not have yet: retry (its lifecycle event may lag)."""


@dataclass(frozen=True)
class VectorRow:
    document_id: str
    object_id: str
    blob_id: str
    vectors: dict[str, object]
    payload: str | None


def read_vector_set(data: bytes, uri: str) -> list[VectorRow]:
    """Rows of a vector set: id columns, one column per feature, and the JSON ``payload``."""
    frame = from_parquet(data)
    missing = [c for c in _REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"vector set {uri} lacks column(s) {missing}: inference must write {list(VECTOR_ID_COLUMNS)}")
    vector_columns = [c for c in frame.columns if c not in VECTOR_ID_COLUMNS]
    rows = []
    for record in frame.to_dict("records"):
        rows.append(
            VectorRow(
                document_id=str(record["document_id"]),
                object_id=str(record["object_id"]),
                blob_id=str(record.get("blob_id") or ""),
                vectors={name: record[name] for name in vector_columns},
                payload=record.get("payload"),
            )
        )
    return rows


@dataclass
class VectorSetIndexer:
    index: QdrantIndex
    store: VectorReader
    missing_collection_grace_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    # Frames that found their collection missing (see missing_collection_grace_s).
    _missing: Waits = field(default_factory=Waits)
    # Batches whose vectors are no longer written (filled from batch.cancelled by the handlers).
    cancelled: CancelledBatches = field(default_factory=CancelledBatches)

    async def index_vectors(self, event: VectorsProduced) -> BatchIndexed:
        """Check each row against the collection's real schema, upsert the valid ones, count all.

        Idempotent: point ids are ids.point_id(collection, document, plugin), so a replay
        overwrites the same points.
        """
        rows: list[VectorRow] = []
        if event.vectors_uri is not None:
            rows = read_vector_set(
                await self.store.get_bytes(event.vectors_uri, event.vectors_sha256), event.vectors_uri
            )
        if not rows:  # nothing to write: inference failed every row, which it already reported
            return self._indexed(event, 0, [])
        schema = await self.index.schema(event.collection_id)
        if schema is None:
            return self._indexed(event, 0, self._collection_missing(event, rows))
        self._missing.done(event.event_id)

        points: list[IndexPoint] = []
        failures: list[RowFailure] = []
        for row in rows:
            clean, problems = check_vectors(event.collection_id, row.document_id, row.vectors, schema)
            payload, payload_error = _payload(row.payload)
            if problems:
                for problem in problems:
                    log.error(
                        "rejected row: reason=%s collection_id=%s document_id=%s vector=%s batch_id=%s: %s",
                        problem.reason.value,
                        event.collection_id,
                        row.document_id,
                        problem.vector_name,
                        event.batch_id,
                        problem.message,
                    )
                failures.append(row_failure(row.document_id, row.object_id, problems))
                continue
            if payload_error is not None:
                log.error(
                    "rejected row: reason=write_failed collection_id=%s document_id=%s: %s",
                    event.collection_id,
                    row.document_id,
                    payload_error,
                )
                failures.append(
                    RowFailure(
                        document_id=row.document_id,
                        object_id=row.object_id,
                        reason=ReasonCode.WRITE_FAILED,
                        message=payload_error,
                    )
                )
                continue
            points.append(self._point(event, row, clean, payload))
        written = await self._write(event, points, failures)
        return self._indexed(event, written, failures)

    def _point(
        self, event: VectorsProduced, row: VectorRow, vectors: dict[str, list[float]], payload: dict[str, Any]
    ) -> IndexPoint:
        payload.update(
            document_id=row.document_id,
            object_id=row.object_id,
            blob_id=row.blob_id,
            collection_id=event.collection_id,
            namespace_id=event.namespace_id,
            batch_id=event.batch_id,
            plugin_id=event.plugin_id,
        )
        return IndexPoint(ids.point_id(event.collection_id, row.document_id, event.plugin_id), vectors, payload)

    async def _write(self, event: VectorsProduced, points: list[IndexPoint], failures: list[RowFailure]) -> int:
        if not points:
            return 0
        try:
            await self.index.upsert(event.collection_id, points)
        except TransientError:
            raise
        except Exception as exc:  # Qdrant refused the write itself: the rows fail, the batch goes on
            log.error(
                "write failed: collection_id=%s batch_id=%s frame_id=%s rows=%d: %r",
                event.collection_id,
                event.batch_id,
                event.frame_id,
                len(points),
                exc,
            )
            rows = [(str(p.payload["document_id"]), str(p.payload["object_id"])) for p in points]
            failures.extend(RowFailure.every(rows, ReasonCode.WRITE_FAILED, f"Qdrant refused the write: {exc}"))
            return 0
        return len(points)

    def _collection_missing(self, event: VectorsProduced, rows: list[VectorRow]) -> list[RowFailure]:
        """Retry while the lifecycle event may still be on its way; afterwards fail the rows loudly."""
        waited = self._missing.waited(event.event_id, self.clock())
        qname = collection_name(event.collection_id)
        if waited < self.missing_collection_grace_s:
            log.warning(
                "collection_id=%s has no Qdrant collection %s yet (waited %.0fs of %.0fs); retrying frame %s",
                event.collection_id,
                qname,
                waited,
                self.missing_collection_grace_s,
                event.frame_id,
            )
            raise CollectionNotReady(f"collection {event.collection_id}: Qdrant collection {qname} does not exist yet")
        self._missing.done(event.event_id)
        message = (
            f"collection {event.collection_id} has no Qdrant collection {qname} after "
            f"{self.missing_collection_grace_s:.0f}s: it was deleted, or its 'created' lifecycle event never arrived"
        )
        log.error("%s; failing %d row(s) of frame %s", message, len(rows), event.frame_id)
        return RowFailure.every(
            [(r.document_id, r.object_id) for r in rows],
            ReasonCode.WRITE_FAILED,
            message,
            "recreate the collection, then retry the batch's failed documents",
        )

    @staticmethod
    def _indexed(event: VectorsProduced, written: int, failures: list[RowFailure]) -> BatchIndexed:
        return BatchIndexed(
            event_id=ids.deterministic_id("evt", event.event_id, "indexed"),
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            batch_id=event.batch_id,
            frame_id=event.frame_id,
            collection_id=event.collection_id,
            plugin_id=event.plugin_id,
            rows_in=event.rows_in,
            rows_embedded=event.rows_embedded,
            rows_written=written,
            failures=[*event.failures, *failures],
        )


def _payload(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """The row's JSON payload as a dict, or an error message."""
    if raw is None or raw == "":
        return {}, None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError) as exc:
        return {}, f"payload is not valid JSON: {exc}"
    if not isinstance(value, dict):
        return {}, f"payload must be a JSON object, got {type(value).__name__}"
    return value, None
