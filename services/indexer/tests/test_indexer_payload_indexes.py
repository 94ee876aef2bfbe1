"""Payload indexes on filtered fields: the index each comparison needs, and their creation (once,
in the background, never failing a search) over in-memory Qdrant.

Local mode keeps no payload indexes (``payload_schema`` stays empty), so :class:`ServerIndexes`
replaces its one payload-index call by a recording fake that reports what it created, as a server does.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException

from featurebus.indexer.payload_indexes import index_schemas
from featurebus.indexer.qdrant_index import IndexPoint, QdrantIndex
from featurebus.indexer.vector_schema import VectorSpec

KEYWORD, FLOAT, BOOL, DATETIME, INTEGER = (
    models.PayloadSchemaType.KEYWORD,
    models.PayloadSchemaType.FLOAT,
    models.PayloadSchemaType.BOOL,
    models.PayloadSchemaType.DATETIME,
    models.PayloadSchemaType.INTEGER,
)
PAYLOADS = [{"lang": "en", "year": 2019}, {"lang": "de", "year": 2024.5}, {"lang": "en", "year": 2024}]


def condition(field: str, operator: str, value: Any = True) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ([condition("lang", "eq", "en")], {"lang": KEYWORD}),
        ([condition("lang", "nin", ["de", "fr"])], {"lang": KEYWORD}),
        ([condition("draft", "ne", False)], {"draft": BOOL}),
        ([condition("year", "gte", 2021)], {"year": FLOAT}),
        ([condition("year", "eq", 2021)], {"year": FLOAT}),
        ([condition("rating", "eq", 4.5)], {"rating": FLOAT}),
        ([condition("year", "in", [2020, 2021])], {"year": FLOAT}),
        ([condition("published", "lt", "2024-01-01T00:00:00Z")], {"published": DATETIME}),
        ([condition("meta.views", "gt", 10)], {"meta.views": FLOAT}),  # Qdrant's dotted key, as filtered
        ([condition("text", "contains", "text 3"), condition("text", "text", "x")], {}),  # would change matching
        ([condition("meta", "exists"), condition("note", "is_null", False)], {}),
        (
            [{"or": [condition("lang", "eq", "de"), {"NOT": [condition("year", "lt", 2020)]}]}],
            {"lang": KEYWORD, "year": FLOAT},
        ),
        ([condition("lang", "eq", "en"), condition("lang", "gte", 3)], {"lang": KEYWORD}),  # the first decides
        ([{"field": "lang", "value": "en"}], {"lang": KEYWORD}),  # eq by default
    ],
)
def test_each_comparison_asks_for_the_index_it_needs(
    where: list[dict[str, Any]], expected: dict[str, models.PayloadSchemaType]
) -> None:
    assert index_schemas({}, where) == expected


def test_equality_filters_ask_for_indexes_too() -> None:
    filters = {"blob_property": "text", "page": 3, "draft": True, "tags": ["a", "b"], "sizes": [1, 2]}
    assert index_schemas(filters) == {
        "blob_property": KEYWORD,
        "page": FLOAT,
        "draft": BOOL,
        "tags": KEYWORD,
        "sizes": FLOAT,
    }


class ServerIndexes:
    """The client's payload-index calls as a server answers them: recorded, then shown in ``payload_schema``."""

    def __init__(self, client: AsyncQdrantClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[tuple[str, str, models.PayloadSchemaType, bool]] = []
        self.schema: dict[str, dict[str, models.PayloadSchemaType]] = {}
        self.error: Exception | None = None
        self.gate = asyncio.Event()
        self.gate.set()
        local_get_collection = client.get_collection

        async def get_collection(collection_name: str) -> models.CollectionInfo:
            info = await local_get_collection(collection_name)
            info.payload_schema = {
                field: models.PayloadIndexInfo(data_type=schema, points=0)
                for field, schema in self.schema.get(collection_name, {}).items()
            }
            return info

        async def create_payload_index(
            collection_name: str, field_name: str, field_schema: models.PayloadSchemaType, wait: bool = True
        ) -> None:
            self.created.append((collection_name, field_name, field_schema, wait))
            await self.gate.wait()
            if self.error is not None:
                raise self.error
            self.schema.setdefault(collection_name, {})[field_name] = field_schema

        monkeypatch.setattr(client, "get_collection", get_collection)
        monkeypatch.setattr(client, "create_payload_index", create_payload_index)


@pytest.fixture
async def index() -> AsyncIterator[QdrantIndex]:
    index = QdrantIndex(AsyncQdrantClient(":memory:"))
    await seed(index)
    yield index
    await index.close()


@pytest.fixture
def server(index: QdrantIndex, monkeypatch: pytest.MonkeyPatch) -> ServerIndexes:
    return ServerIndexes(index.client, monkeypatch)


async def seed(index: QdrantIndex) -> None:
    await index.create("col_1", {"text_emb": VectorSpec("text_emb", 3, "cosine")})
    points = [
        IndexPoint(str(uuid.uuid4()), {"text_emb": [1.0, n / 10, 0.0]}, {"n": n, **payload})
        for n, payload in enumerate(PAYLOADS)
    ]
    await index.upsert("col_1", points)


async def search(index: QdrantIndex, *where: dict[str, Any], **filters: Any) -> set[int]:
    hits = await index.search("col_1", "text_emb", [1.0, 0.0, 0.0], 10, filters, list(where))
    return {hit.payload["n"] for hit in hits}


async def test_a_filtered_search_creates_each_index_once_without_waiting_for_it(
    index: QdrantIndex, server: ServerIndexes
) -> None:
    server.gate.clear()  # Qdrant does not answer the index creation yet
    assert await search(index, condition("year", "gte", 2020), lang="en") == {2}
    await asyncio.sleep(0)  # the search has answered; the creation runs until it waits for Qdrant
    assert server.created == [("fb_col_1", "lang", KEYWORD, False)] and server.schema == {}
    server.gate.set()
    await index.payload_indexes.settle()
    assert await search(index, condition("year", "gte", 2020), lang="en") == {2}
    await index.payload_indexes.settle()
    assert server.created == [("fb_col_1", "lang", KEYWORD, False), ("fb_col_1", "year", FLOAT, False)]
    assert server.schema == {"fb_col_1": {"lang": KEYWORD, "year": FLOAT}}


async def test_an_unfiltered_search_creates_none(index: QdrantIndex, server: ServerIndexes) -> None:
    assert await search(index) == {0, 1, 2}
    await index.payload_indexes.settle()
    assert server.created == []


async def test_a_field_keeps_the_index_it_has_and_another_comparison_is_logged_once(
    index: QdrantIndex, server: ServerIndexes, caplog: pytest.LogCaptureFixture
) -> None:
    server.schema["fb_col_1"] = {"year": INTEGER}  # made by an operator
    with caplog.at_level(logging.WARNING, logger="featurebus.indexer"):
        for _ in range(2):
            assert await search(index, condition("lang", "eq", "en")) == {0, 2}
            assert await search(index, condition("lang", "in", ["7"]), condition("year", "gt", 2020)) == set()
            assert await search(index, condition("lang", "eq", 7)) == set()  # compares lang as a number
            await index.payload_indexes.settle()
    assert server.created == [("fb_col_1", "lang", KEYWORD, False)]
    assert server.schema == {"fb_col_1": {"year": INTEGER, "lang": KEYWORD}}
    assert sorted(r.getMessage() for r in caplog.records) == [
        "collection fb_col_1 field 'lang' has a payload index of type keyword; filters comparing it as float do not "
        "use it",
        "collection fb_col_1 field 'year' has a payload index of type integer; filters comparing it as float do not "
        "use it",
    ]


@pytest.mark.parametrize(
    "error",
    [ResponseHandlingException(OSError("connection refused")), ValueError("field schema refused")],
)
async def test_a_failed_index_creation_is_logged_and_never_fails_the_search(
    index: QdrantIndex, server: ServerIndexes, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    server.error = error
    with caplog.at_level(logging.WARNING, logger="featurebus.indexer"):
        assert await search(index, condition("lang", "ne", "en")) == {1}
        await index.payload_indexes.settle()
    (record,) = caplog.records
    message = record.getMessage()
    assert "fb_col_1" in message and "'lang'" in message and str(error) in message
    server.error = None
    assert await search(index, condition("lang", "ne", "en")) == {1}  # asked again, and created
    await index.payload_indexes.settle()
    assert server.created == [("fb_col_1", "lang", KEYWORD, False)] * 2
    assert server.schema == {"fb_col_1": {"lang": KEYWORD}}


async def test_a_recreated_collection_gets_its_indexes_again(index: QdrantIndex, server: ServerIndexes) -> None:
    assert await search(index, condition("lang", "eq", "de")) == {1}
    await index.payload_indexes.settle()
    assert await index.delete("col_1")
    server.schema.clear()  # the server drops a deleted collection's indexes
    await seed(index)
    assert await search(index, condition("lang", "eq", "de")) == {1}
    await index.payload_indexes.settle()
    assert server.created == [("fb_col_1", "lang", KEYWORD, False)] * 2


async def test_local_mode_answers_filtered_searches_and_logs_nothing(
    index: QdrantIndex, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="featurebus.indexer"):
        for _ in range(2):
            assert await search(index, condition("year", "lt", 2024.5), lang="en") == {0, 2}
            await index.payload_indexes.settle()
    assert caplog.records == []
    assert (await index.client.get_collection("fb_col_1")).payload_schema == {}  # local mode keeps none
