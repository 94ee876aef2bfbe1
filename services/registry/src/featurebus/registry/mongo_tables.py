"""The MongoDB (beanie) adapter of :class:`~featurebus.registry.tables.Table`.

Each record type gets a beanie document class of its own per table object (made by :func:`mongo_tables`),
so two registries in one process, e.g. in tests, never share a binding. Unique field sets and
lookups of the records become MongoDB indexes. The client must be made with ``tz_aware=True``,
so stored times come back in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from beanie import Document, UpdateResponse, init_beanie
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.results import UpdateResult

from featurebus.registry.records import Record
from featurebus.registry.tables import AnyOf, Duplicate, Tables, checked_changes

__all__ = ["MongoTable", "mongo_tables"]

R = TypeVar("R", bound=Record)

DUPLICATE_KEY = 11000  # MongoDB's error code of a write that a unique index refused


def _document_class(record: type[Record]) -> type[Document]:
    indexes = [IndexModel([(f, ASCENDING) for f in unique], unique=True) for unique in record.UNIQUE]
    indexes += [IndexModel([(f, ASCENDING)]) for f in record.LOOKUPS]
    name = f"{record.__name__}Document"
    # A nested class as beanie reads it (pydantic skips a class attribute named inside the model).
    settings = type("Settings", (), {"name": record.TABLE, "indexes": indexes, "__qualname__": f"{name}.Settings"})
    return type(name, (record, Document), {"Settings": settings, "__module__": __name__, "__qualname__": name})


def _filter(id: str | None, where: Mapping[str, Any]) -> dict[str, Any]:
    query = {
        "_id" if name == "id" else name: {"$in": list(v.values)} if isinstance(v, AnyOf) else v
        for name, v in where.items()
    }
    if id is not None:
        query["_id"] = id
    return query


class MongoTable(Generic[R]):
    """One record type's MongoDB collection; :meth:`init` before use."""

    def __init__(self, record: type[R], database: AsyncDatabase[Any]) -> None:
        self.record, self.document, self._database = record, _document_class(record), database
        self._fields = set(record.model_fields)

    async def init(self) -> None:
        await init_beanie(database=self._database, document_models=[self.document])

    def _out(self, doc: Document | None) -> R | None:
        return None if doc is None else self.record.model_validate(doc.model_dump(include=self._fields))

    def _doc(self, record: R) -> Document:
        doc: Document = self.document.model_validate(record.model_dump())
        return doc

    async def get(self, id: str) -> R | None:
        return self._out(await self.document.get(id))

    async def find_one(self, **where: Any) -> R | None:
        return self._out(await self.document.find_one(_filter(None, where)))

    async def find(self, **where: Any) -> list[R]:
        docs = await self.document.find(_filter(None, where)).sort("+_id").to_list()
        return [self.record.model_validate(d.model_dump(include=self._fields)) for d in docs]

    async def page(self, offset: int, limit: int, **where: Any) -> tuple[list[R], int]:
        query = _filter(None, where)
        total = await self.document.find(query).count()
        docs = await self.document.find(query).sort("+created_at", "+_id").skip(offset).limit(limit).to_list()
        return [self.record.model_validate(d.model_dump(include=self._fields)) for d in docs], total

    async def insert(self, record: R) -> None:
        try:
            await self._doc(record).insert()
        except DuplicateKeyError:
            raise Duplicate(f"{self.record.TABLE}: {record.id!r} or one of {self.record.UNIQUE} is taken") from None

    async def insert_many(self, records: Sequence[R]) -> None:
        if not records:
            return
        try:
            await self.document.insert_many([self._doc(r) for r in records], ordered=True)
        except BulkWriteError as exc:
            if any(e.get("code") == DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise Duplicate(f"{self.record.TABLE}: an id or one of {self.record.UNIQUE} is taken") from None
            raise

    async def save(self, record: R) -> None:
        try:
            await self._doc(record).save()
        except DuplicateKeyError:
            raise Duplicate(f"{self.record.TABLE}: one of {self.record.UNIQUE} is taken") from None

    async def update(self, id: str, changes: Mapping[str, Any], **where: Any) -> bool:
        result = await self.document.find_one(_filter(id, where)).update(
            {"$set": checked_changes(self.record, changes)}, response_type=UpdateResponse.UPDATE_RESULT
        )
        return isinstance(result, UpdateResult) and result.matched_count > 0

    async def increment(self, id: str, field: str, by: int) -> None:
        await self.document.find_one({"_id": id}).update({"$inc": {field: by}})

    async def delete(self, id: str) -> bool:
        result = await self.document.find({"_id": id}).delete()
        return result is not None and result.deleted_count > 0

    async def delete_many(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        result = await self.document.find({"_id": {"$in": list(ids)}}).delete()
        return result.deleted_count if result is not None else 0


def mongo_tables(database: AsyncDatabase[Any]) -> Tables:
    """The registry's tables in ``database``; ``await tables.init()`` creates their indexes (idempotent)."""

    def table(record: type[R]) -> MongoTable[R]:
        return MongoTable(record, database)

    return Tables.made_by(table)
