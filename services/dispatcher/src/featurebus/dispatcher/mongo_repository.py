"""The MongoDB (beanie) adapter of :class:`~featurebus.dispatcher.repository.ObjectRepository`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, ClassVar

from beanie import Document, SortDirection, init_beanie
from pydantic import Field
from pymongo import ASCENDING, IndexModel, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from featurebus.common.events import Blob, IngestedObject
from featurebus.dispatcher.repository import mongo_time

__all__ = ["MongoObjectRepository", "StoredObject"]


class StoredObject(Document):
    """One object of a bucket, as the dispatcher snapshots it for batches.

    Its ``_id`` is ``<bucket_id>/<object_id>``: every write is a lookup by primary key, which every
    MongoDB-compatible server does in constant time (a filter on other fields made SecantusDB scan
    the collection for each object written).
    """

    id: str | None = None  # type: ignore[assignment]
    bucket_id: str
    object_id: str
    namespace_id: str
    org_id: str
    blobs: list[Blob]
    metadata: dict[str, Any] = Field(default_factory=dict)
    ingested_at: datetime

    class Settings:
        name = "bucket_objects"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel([("bucket_id", ASCENDING), ("object_id", ASCENDING)], name="bucket_object"),
        ]

    def to_ingested(self) -> IngestedObject:
        return IngestedObject(object_id=self.object_id, blobs=self.blobs, metadata=self.metadata)


class MongoObjectRepository:
    """Objects in the dispatcher's own database; call :meth:`init` once before use."""

    def __init__(self, database: AsyncDatabase[Any]) -> None:
        self._database = database

    async def init(self) -> None:
        """Register the document model and create its index (idempotent)."""
        await init_beanie(database=self._database, document_models=[StoredObject])

    async def upsert(
        self,
        *,
        org_id: str,
        namespace_id: str,
        bucket_id: str,
        objects: Sequence[IngestedObject],
        ingested_at: datetime,
    ) -> int:
        if not objects:
            return 0
        stamp = mongo_time(ingested_at)
        collection = StoredObject.get_pymongo_collection()
        keys = {obj.object_id: _key(bucket_id, obj.object_id) for obj in objects}
        # A stored version newer than this message wins (a late replay changes nothing).
        query = {"_id": {"$in": list(keys.values())}, "ingested_at": {"$gt": stamp}}
        newer = {doc["_id"] async for doc in collection.find(query, {"_id": 1})}
        operations = []
        for obj in objects:
            if keys[obj.object_id] in newer:
                continue
            document = StoredObject(
                bucket_id=bucket_id,
                object_id=obj.object_id,
                namespace_id=namespace_id,
                org_id=org_id,
                blobs=obj.blobs,
                metadata=obj.metadata,
                ingested_at=stamp,
            ).model_dump(mode="python", exclude={"id", "revision_id"})
            operations.append(UpdateOne({"_id": keys[obj.object_id]}, {"$set": document}, upsert=True))
        if operations:
            await collection.bulk_write(operations, ordered=False)
        return len(objects)

    async def list_objects(self, bucket_id: str, object_ids: Sequence[str] | None = None) -> list[IngestedObject]:
        query: dict[str, Any] = {"bucket_id": bucket_id}
        if object_ids is not None:
            query["object_id"] = {"$in": list(object_ids)}
        found = await StoredObject.find(query).sort([("object_id", SortDirection.ASCENDING)]).to_list()
        return [doc.to_ingested() for doc in found]


def _key(bucket_id: str, object_id: str) -> str:
    return f"{bucket_id}/{object_id}"
