"""Where the dispatcher keeps the objects of every bucket: the port and its in-memory twin.

Both implementations honour the same rules, proven by one test run against both
(``tests/test_repository_contract.py``):

- ``upsert`` is keyed by (bucket_id, object_id) and stamps ``ingested_at`` with the time of the
  ingest *event*, not the wall clock, so replaying a message writes the same document again;
- an older message replayed after a newer one for the same object changes nothing (the newer
  version wins);
- ``list_objects`` returns objects ordered by object_id (frames are planned in that order).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from featurebus.common.events import IngestedObject

__all__ = ["InMemoryObjectRepository", "ObjectRepository", "mongo_time"]


def mongo_time(moment: datetime) -> datetime:
    """``moment`` as MongoDB stores it: UTC, millisecond precision (so both twins compare alike)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class ObjectRepository(Protocol):
    async def init(self) -> None:
        """Prepare the storage (indexes); called once at start, until it succeeds."""
        ...

    async def upsert(
        self,
        *,
        org_id: str,
        namespace_id: str,
        bucket_id: str,
        objects: Sequence[IngestedObject],
        ingested_at: datetime,
    ) -> int:
        """Store ``objects`` (idempotent); return how many were written or already identical."""
        ...

    async def list_objects(self, bucket_id: str, object_ids: Sequence[str] | None = None) -> list[IngestedObject]:
        """The bucket's objects (only ``object_ids`` when given), ordered by object_id."""
        ...


class InMemoryObjectRepository:
    """A dict-backed twin of the MongoDB repository for unit tests."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[datetime, IngestedObject]] = {}

    async def init(self) -> None:
        return None

    async def upsert(
        self,
        *,
        org_id: str,
        namespace_id: str,
        bucket_id: str,
        objects: Sequence[IngestedObject],
        ingested_at: datetime,
    ) -> int:
        stamp = mongo_time(ingested_at)
        for obj in objects:
            current = self._rows.get((bucket_id, obj.object_id))
            if current is not None and current[0] > stamp:
                continue  # a newer version is stored; a late replay must not roll it back
            self._rows[(bucket_id, obj.object_id)] = (stamp, obj.model_copy(deep=True))
        return len(objects)

    async def list_objects(self, bucket_id: str, object_ids: Sequence[str] | None = None) -> list[IngestedObject]:
        wanted = set(object_ids) if object_ids is not None else None
        found = [
            obj.model_copy(deep=True)
            for (bucket, object_id), (_, obj) in self._rows.items()
            if bucket == bucket_id and (wanted is None or object_id in wanted)
        ]
        return sorted(found, key=lambda o: o.object_id)
