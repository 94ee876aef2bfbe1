"""Where the registry keeps its records: the table port, its in-memory twin, and the set of tables.

Use cases see only :class:`Table`. Both implementations keep the same rules, proven by one test
run against both (``tests/test_registry_tables_contract.py``):

- ``insert`` refuses a record whose id, or one of its ``UNIQUE`` field sets, is taken
  (:class:`Duplicate`); ``save`` inserts or replaces by id;
- ``where`` filters are equality per field (``id`` included), or membership with :class:`AnyOf`;
- ``find`` returns records ordered by id; ``page`` by ``created_at``, then id, with the total;
- ``update`` sets fields of one record only if it still matches ``where`` (a compare-and-set) and
  says whether it did; ``increment`` adds to a counter atomically;
- stored times come back in UTC with millisecond precision (as MongoDB keeps them).
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Protocol, TypeVar

from pydantic import TypeAdapter

from featurebus.registry.records import (
    ApiKey,
    Batch,
    BlobUpload,
    Bucket,
    Collection,
    FrameResult,
    Model,
    Namespace,
    Organization,
    Plugin,
    PluginEnablement,
    PluginUpload,
    Record,
    Retriever,
    RetrieverExecution,
    Secret,
    SecretGrant,
)

__all__ = [
    "AnyOf",
    "Duplicate",
    "InMemoryTable",
    "RecentReads",
    "Table",
    "TableFactory",
    "Tables",
    "checked_changes",
    "stored_time",
]

R = TypeVar("R", bound=Record)
T = TypeVar("T")


class Duplicate(Exception):
    """An insert whose id or unique fields another record already has."""


@dataclass(frozen=True)
class AnyOf:
    """A ``where`` value: the field equals one of ``values``."""

    values: Sequence[Any]


def stored_time(moment: datetime) -> datetime:
    """``moment`` as MongoDB stores it: UTC, millisecond precision."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Table(Protocol[R]):
    async def init(self) -> None:
        """Prepare the storage (indexes); called once at start, until it succeeds."""
        ...

    async def get(self, id: str) -> R | None: ...

    async def find_one(self, **where: Any) -> R | None: ...

    async def find(self, **where: Any) -> list[R]:
        """Every record matching ``where``, ordered by id."""
        ...

    async def page(self, offset: int, limit: int, **where: Any) -> tuple[list[R], int]:
        """``limit`` records from ``offset``, ordered by (created_at, id), and how many match."""
        ...

    async def insert(self, record: R) -> None:
        """Store a new record; :class:`Duplicate` if its id or a unique field set is taken."""
        ...

    async def insert_many(self, records: Sequence[R]) -> None:
        """Store new records in one round trip, in order; :class:`Duplicate` at the first whose id
        or unique field set is taken (the ones before it are stored)."""
        ...

    async def save(self, record: R) -> None:
        """Insert or replace the record with this id."""
        ...

    async def update(self, id: str, changes: Mapping[str, Any], **where: Any) -> bool:
        """Set ``changes`` on record ``id`` if it matches ``where``; whether it did."""
        ...

    async def increment(self, id: str, field: str, by: int) -> None: ...

    async def delete(self, id: str) -> bool:
        """Remove record ``id``; whether there was one."""
        ...

    async def delete_many(self, ids: Sequence[str]) -> int:
        """Remove the records of ``ids`` (in one round trip); how many there were."""
        ...


def checked_changes(record: type[Record], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``changes`` to ``record``'s fields, validated by field type and dumped as stored (both tables).

    A field the record does not have, or a value of the wrong type, fails here, before any write.
    """
    out = {}
    for name, value in changes.items():
        if name == "id" or name not in record.model_fields:
            raise ValueError(f"{record.TABLE}: {name!r} is not a field that can be changed")
        adapter = _adapter(record, name)
        out[name] = adapter.dump_python(adapter.validate_python(value))
    return out


@functools.cache
def _adapter(record: type[Record], name: str) -> TypeAdapter[Any]:
    field = record.model_fields[name]
    with_constraints: Any = Annotated[field.annotation, field]  # the field's Field(...) constraints too
    return TypeAdapter(with_constraints)


def _stored(value: Any) -> Any:
    if isinstance(value, datetime):
        return stored_time(value)
    if isinstance(value, dict):
        return {k: _stored(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stored(v) for v in value]
    return value


def _matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for name, wanted in where.items():
        value = row.get(name)
        if isinstance(wanted, AnyOf):
            if value not in wanted.values:
                return False
        elif value != wanted:
            return False
    return True


class InMemoryTable(Generic[R]):
    """A dict-backed twin of the MongoDB table, for unit tests of the registry's use cases."""

    def __init__(self, record: type[R]) -> None:
        self.record = record
        self._rows: dict[str, dict[str, Any]] = {}

    async def init(self) -> None:
        return None

    def _out(self, row: dict[str, Any]) -> R:
        return self.record.model_validate(copy.deepcopy(row))

    def _row(self, record: R) -> dict[str, Any]:
        self.record.model_validate(record.model_dump())  # the same checks as a write through beanie
        return _stored(record.model_dump())  # type: ignore[no-any-return]

    def _clash(self, row: dict[str, Any]) -> bool:
        for unique in self.record.UNIQUE:
            key = [row.get(f) for f in unique]
            if any([other.get(f) for f in unique] == key for i, other in self._rows.items() if i != row["id"]):
                return True
        return False

    async def get(self, id: str) -> R | None:
        row = self._rows.get(id)
        return self._out(row) if row is not None else None

    async def find_one(self, **where: Any) -> R | None:
        found = await self.find(**where)
        return found[0] if found else None

    async def find(self, **where: Any) -> list[R]:
        return [self._out(self._rows[i]) for i in sorted(self._rows) if _matches(self._rows[i], where)]

    async def page(self, offset: int, limit: int, **where: Any) -> tuple[list[R], int]:
        rows = [row for row in self._rows.values() if _matches(row, where)]
        rows.sort(key=lambda row: (row.get("created_at") or datetime.min.replace(tzinfo=UTC), row["id"]))
        return [self._out(row) for row in rows[offset : offset + limit]], len(rows)

    async def insert(self, record: R) -> None:
        row = self._row(record)
        if row["id"] in self._rows or self._clash(row):
            raise Duplicate(f"{self.record.TABLE}: {row['id']!r} or one of {self.record.UNIQUE} is taken")
        self._rows[row["id"]] = row

    async def insert_many(self, records: Sequence[R]) -> None:
        for record in records:
            await self.insert(record)

    async def save(self, record: R) -> None:
        row = self._row(record)
        if self._clash(row):
            raise Duplicate(f"{self.record.TABLE}: one of {self.record.UNIQUE} is taken")
        self._rows[row["id"]] = row

    async def update(self, id: str, changes: Mapping[str, Any], **where: Any) -> bool:
        row = self._rows.get(id)
        if row is None or not _matches(row, where):
            return False
        row.update(_stored(checked_changes(self.record, changes)))
        return True

    async def increment(self, id: str, field: str, by: int) -> None:
        if id in self._rows:
            self._rows[id][field] = (self._rows[id].get(field) or 0) + by

    async def delete(self, id: str) -> bool:
        return self._rows.pop(id, None) is not None

    async def delete_many(self, ids: Sequence[str]) -> int:
        return sum(self._rows.pop(id, None) is not None for id in set(ids))


class RecentReads(Generic[R]):
    """``table``, its answers to ``get``, ``find_one`` and ``find`` kept for ``ttl_s``.

    For the tables that every request reads (the caller's key and namespace) and that a retriever
    execution reads (its retriever, plugins and collections): on the query path each read is a
    MongoDB round trip that costs more than the search it prepares. A write through this object
    forgets every answer of its table at once, and a read that a write overtook is not kept, so
    this process always reads its own writes; a second registry beside it may answer from a record
    another one changed for at most ``ttl_s``. ``page`` is always read. Answers are copies, which
    a caller may change.
    """

    MOST_ANSWERS = 10_000  # then every answer is forgotten: memory stays bounded

    def __init__(self, table: Table[R], ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.table, self.ttl_s, self.clock = table, ttl_s, clock
        self._answers: dict[Hashable, tuple[float, Any]] = {}
        self._writes = 0  # how many writes began: a read that one overtook is not kept

    async def init(self) -> None:
        await self.table.init()

    async def get(self, id: str) -> R | None:
        found: R | None = await self._read(("get", id), lambda: self.table.get(id))
        return found

    async def find_one(self, **where: Any) -> R | None:
        found: R | None = await self._read(_key("find_one", where), lambda: self.table.find_one(**where))
        return found

    async def find(self, **where: Any) -> list[R]:
        found: list[R] = await self._read(_key("find", where), lambda: self.table.find(**where))
        return found

    async def page(self, offset: int, limit: int, **where: Any) -> tuple[list[R], int]:
        return await self.table.page(offset, limit, **where)

    async def insert(self, record: R) -> None:
        await self._write(self.table.insert(record))

    async def insert_many(self, records: Sequence[R]) -> None:
        await self._write(self.table.insert_many(records))

    async def save(self, record: R) -> None:
        await self._write(self.table.save(record))

    async def update(self, id: str, changes: Mapping[str, Any], **where: Any) -> bool:
        return await self._write(self.table.update(id, changes, **where))

    async def increment(self, id: str, field: str, by: int) -> None:
        await self._write(self.table.increment(id, field, by))

    async def delete(self, id: str) -> bool:
        return await self._write(self.table.delete(id))

    async def delete_many(self, ids: Sequence[str]) -> int:
        return await self._write(self.table.delete_many(ids))

    async def _read(self, key: Hashable | None, read: Callable[[], Awaitable[Any]]) -> Any:
        now = self.clock()
        kept = self._answers.get(key) if key is not None else None
        if kept is not None and kept[0] > now:
            return _copied(kept[1])
        writes = self._writes
        answer = await read()
        if key is not None and writes == self._writes:
            if len(self._answers) >= self.MOST_ANSWERS:
                self._answers.clear()
            self._answers[key] = (now + self.ttl_s, answer)
        return _copied(answer)

    async def _write(self, write: Awaitable[T]) -> T:
        self._forget()
        try:
            return await write
        finally:
            self._forget()  # what was read while the write ran may be the record before it

    def _forget(self) -> None:
        self._writes += 1
        self._answers.clear()


def _key(read: str, where: Mapping[str, Any]) -> Hashable | None:
    """The read of ``where`` as a key of the answers; None (not kept) when a value cannot be one."""
    key = (read, *sorted((k, tuple(v.values) if isinstance(v, AnyOf) else v) for k, v in where.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _copied(answer: Any) -> Any:
    if isinstance(answer, list):
        return [record.model_copy(deep=True) for record in answer]
    return answer.model_copy(deep=True) if answer is not None else None


class TableFactory(Protocol):
    def __call__(self, record: type[R], /) -> Table[R]: ...


@dataclass(frozen=True)
class Tables:
    """Every table of the registry, one per record type (each field named after its record's TABLE)."""

    organizations: Table[Organization]
    api_keys: Table[ApiKey]
    namespaces: Table[Namespace]
    plugin_uploads: Table[PluginUpload]
    plugins: Table[Plugin]
    plugin_enablements: Table[PluginEnablement]
    buckets: Table[Bucket]
    blob_uploads: Table[BlobUpload]
    collections: Table[Collection]
    batches: Table[Batch]
    frame_results: Table[FrameResult]
    retrievers: Table[Retriever]
    retriever_executions: Table[RetrieverExecution]
    secrets: Table[Secret]
    secret_grants: Table[SecretGrant]
    models: Table[Model]

    async def init(self) -> None:
        for f in fields(self):
            await getattr(self, f.name).init()

    @classmethod
    def made_by(cls, make: TableFactory) -> Tables:
        return cls(
            organizations=make(Organization),
            api_keys=make(ApiKey),
            namespaces=make(Namespace),
            plugin_uploads=make(PluginUpload),
            plugins=make(Plugin),
            plugin_enablements=make(PluginEnablement),
            buckets=make(Bucket),
            blob_uploads=make(BlobUpload),
            collections=make(Collection),
            batches=make(Batch),
            frame_results=make(FrameResult),
            retrievers=make(Retriever),
            retriever_executions=make(RetrieverExecution),
            secrets=make(Secret),
            secret_grants=make(SecretGrant),
            models=make(Model),
        )

    @classmethod
    def in_memory(cls) -> Tables:
        return cls.made_by(InMemoryTable)

    def reading_recent(self, ttl_s: float) -> Tables:
        """These tables, the ones on every request's path and a retriever execution's kept in
        memory (:class:`RecentReads`); ``ttl_s`` 0 keeps nothing."""
        if ttl_s <= 0:
            return self
        hot = ("organizations", "api_keys", "namespaces", "plugins", "collections", "retrievers")
        return replace(self, **{name: RecentReads(getattr(self, name), ttl_s) for name in hot})
