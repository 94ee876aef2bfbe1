"""Payload indexes on the fields that searches filter on, created the first time a filter uses one.

A Qdrant server plans a filtered HNSW search from the payload indexes of the filtered fields;
without them it checks each candidate's payload, which is slow on large collections. How a filter
compares a field decides the index (:func:`index_schemas`): ``keyword`` for strings matched by
``eq``/``ne``/``in``/``nin``, ``bool`` for booleans, ``datetime`` for ranges over ISO date-times and
``float`` for every comparison with numbers. ``float`` rather than ``integer``: a float index holds
whole and fractional values alike, so a range stays correct whatever the payloads hold, while an
integer index would leave fractional values out of the ranges it answers (an integer match on a
float-indexed field is checked from the payload, as without an index).

``contains``/``text`` get none on purpose: without a full-text index Qdrant matches the exact
substring, with one it matches tokenized words, so creating it would change what ``contains``
finds. ``exists``/``is_null`` need none. Local mode accepts payload indexes and ignores them
(qdrant-client warns once per process).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from featurebus.common.filters import checked, is_group

__all__ = ["PayloadIndexes", "index_schemas"]

log = logging.getLogger("featurebus.indexer")

_RANGES = ("gt", "gte", "lt", "lte")


def index_schemas(
    filters: Mapping[str, Any], where: Sequence[Mapping[str, Any]] = ()
) -> dict[str, models.PayloadSchemaType]:
    """The payload index each field of valid filters needs, by field (dots for nested fields).

    ``filters`` are equality filters (a list matches any item), ``where`` filters in the filter
    language; a field compared in several ways gets the index of its first comparison.
    """
    schemas: dict[str, models.PayloadSchemaType] = {}
    for key, value in filters.items():
        _add(schemas, key, "in" if isinstance(value, list) else "eq", value)
    for i, node in enumerate(where):
        _walk(schemas, checked(node, f"where[{i}]"))
    return schemas


def _walk(schemas: dict[str, models.PayloadSchemaType], node: dict[str, Any]) -> None:
    if is_group(node):
        for members in node.values():
            for member in members:
                _walk(schemas, member)
    else:
        _add(schemas, node["field"], node["operator"], node["value"])


def _add(schemas: dict[str, models.PayloadSchemaType], field: str, operator: str, value: Any) -> None:
    if operator in ("exists", "is_null", "contains", "text"):
        return
    sample = value[0] if operator in ("in", "nin") else value
    if isinstance(sample, bool):
        schema = models.PayloadSchemaType.BOOL
    elif isinstance(sample, str):
        schema = models.PayloadSchemaType.DATETIME if operator in _RANGES else models.PayloadSchemaType.KEYWORD
    else:
        schema = models.PayloadSchemaType.FLOAT
    schemas.setdefault(field, schema)


class PayloadIndexes:
    """Creates, once per process, the payload index each filtered field of a collection needs.

    Creation runs in the background (``wait=False``), so a search never waits for it nor fails
    because of it: a failure is logged and a later search asks again. A field keeps the first
    index it gets, here or already in Qdrant; a filter comparing it otherwise is logged once,
    never answered by re-creating the index (Qdrant would replace and rebuild it each time).
    """

    def __init__(self, client: AsyncQdrantClient) -> None:
        self.client = client
        self._seen: set[tuple[str, str, models.PayloadSchemaType]] = set()  # (collection, field, schema)
        self._chosen: dict[tuple[str, str], models.PayloadSchemaType] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def ensure(self, collection: str, schemas: Mapping[str, models.PayloadSchemaType]) -> None:
        """Start creating the indexes of Qdrant collection ``collection`` not asked for yet."""
        new: dict[str, models.PayloadSchemaType] = {}
        for field, schema in schemas.items():
            if (collection, field, schema) in self._seen:
                continue
            self._seen.add((collection, field, schema))
            chosen = self._chosen.setdefault((collection, field), schema)
            if chosen == schema:
                new[field] = schema
            else:
                _log_other(collection, field, chosen, schema)
        if new:
            task = asyncio.create_task(self._create(collection, new))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def forget(self, collection: str) -> None:
        """The collection was created or deleted: it has no indexes of ours."""
        self._seen = {key for key in self._seen if key[0] != collection}
        self._chosen = {key: s for key, s in self._chosen.items() if key[0] != collection}

    async def settle(self) -> None:
        """Wait until every creation started has been sent to Qdrant or has failed."""
        await asyncio.gather(*self._pending)

    async def close(self) -> None:
        for task in self._pending:
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)

    async def _create(self, collection: str, new: Mapping[str, models.PayloadSchemaType]) -> None:
        try:
            existing = (await self.client.get_collection(collection)).payload_schema
        except Exception as exc:  # the search goes on; a later one asks again
            for field, schema in new.items():
                self._failed(collection, field, schema, exc)
            return
        for field, schema in new.items():
            have = existing.get(field)
            if have is not None:  # created by another process or an operator
                self._chosen[(collection, field)] = have.data_type
                if have.data_type != schema:
                    _log_other(collection, field, have.data_type, schema)
                continue
            try:
                await self.client.create_payload_index(collection, field, field_schema=schema, wait=False)
            except Exception as exc:
                self._failed(collection, field, schema, exc)

    def _failed(self, collection: str, field: str, schema: models.PayloadSchemaType, exc: Exception) -> None:
        log.warning(
            "payload index (%s) on collection %s field %r not created, a later filtered search retries: %s",
            schema.value,
            collection,
            field,
            exc,
        )
        self._seen.discard((collection, field, schema))
        if self._chosen.get((collection, field)) == schema:
            del self._chosen[(collection, field)]


def _log_other(collection: str, field: str, have: models.PayloadSchemaType, wanted: models.PayloadSchemaType) -> None:
    log.warning(
        "collection %s field %r has a payload index of type %s; filters comparing it as %s do not use it",
        collection,
        field,
        have.value,
        wanted.value,
    )
