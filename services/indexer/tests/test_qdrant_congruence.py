"""Qdrant local mode and a Qdrant server give the indexer the same answers.

The local stack runs Qdrant in local mode inside the indexer; production runs a server. In the
manner of qdrant-client's own congruence tests, the same points go into a local-mode client and
the server, the same questions go to both, and the answers are compared: the indexer's search
(:class:`QdrantIndex`, one named dense vector) under every operator of the retriever filter
language, before and after the payload indexes those filters create (a server plans with them,
local mode ignores them), and scroll and count under the same filters.

Only with ``FEATUREBUS_TEST_STACK=containers`` (a ``qdrant/qdrant`` server, deploy/local/
container_stack.py): on the local stack there is no server to compare with, and the tests are
skipped saying so, never passed.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from container_stack import stack_mode
from qdrant_client import AsyncQdrantClient, models

from featurebus.indexer.payload_indexes import index_schemas
from featurebus.indexer.qdrant_index import IndexPoint, QdrantIndex, collection_name, payload_filter
from featurebus.indexer.vector_schema import VectorSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DIM = 8
POINTS = 240
VECTOR = "text_embed_v1_embedding"
SCHEMA = {"cosine": VectorSpec(VECTOR, DIM, "cosine"), "dot": VectorSpec(VECTOR, DIM, "dot")}
SKIP_REASON = (
    "compares Qdrant local mode with a Qdrant server: only with FEATUREBUS_TEST_STACK=containers "
    "(make test-containers), the local stack has no Qdrant server"
)

# Every operator of featurebus.common.filters, alone and in groups, on the fields of _payload().
WHERE: dict[str, list[dict[str, Any]]] = {
    "eq str": [{"field": "lang", "operator": "eq", "value": "en"}],
    "ne str": [{"field": "lang", "operator": "ne", "value": "en"}],
    "eq int": [{"field": "year", "operator": "eq", "value": 2021}],
    "eq float": [{"field": "rating", "operator": "eq", "value": 2.5}],
    "eq bool": [{"field": "public", "operator": "eq", "value": True}],
    "ne bool": [{"field": "public", "operator": "ne", "value": True}],
    "in str": [{"field": "lang", "operator": "in", "value": ["de", "fr"]}],
    "nin str": [{"field": "lang", "operator": "nin", "value": ["de", "fr"]}],
    "in int": [{"field": "year", "operator": "in", "value": [2019, 2023]}],
    "in array": [{"field": "tags", "operator": "in", "value": ["news"]}],
    "eq array": [{"field": "tags", "operator": "eq", "value": "sport"}],
    "gte int": [{"field": "year", "operator": "gte", "value": 2021}],
    "lt float": [{"field": "rating", "operator": "lt", "value": 2.5}],
    "gt on ints and floats": [{"field": "score", "operator": "gt", "value": 3}],
    "range of two": [
        {"field": "year", "operator": "gt", "value": 2019},
        {"field": "year", "operator": "lte", "value": 2022},
    ],
    "datetime gte": [{"field": "published", "operator": "gte", "value": "2024-03-01T00:00:00Z"}],
    "datetime lt offset": [{"field": "published", "operator": "lt", "value": "2024-02-01T12:00:00+02:00"}],
    "nested eq": [{"field": "meta.source", "operator": "eq", "value": "web"}],
    "nested gte": [{"field": "meta.pages", "operator": "gte", "value": 5}],
    "exists": [{"field": "summary", "operator": "exists", "value": True}],
    "not exists": [{"field": "summary", "operator": "exists", "value": False}],
    "is_null": [{"field": "summary", "operator": "is_null", "value": True}],
    "not is_null": [{"field": "summary", "operator": "is_null", "value": False}],
    "contains": [{"field": "text", "operator": "contains", "value": "penguin"}],
    "text two words": [{"field": "text", "operator": "text", "value": "ice sheet"}],
    "AND": [
        {
            "AND": [
                {"field": "lang", "operator": "eq", "value": "en"},
                {"field": "public", "operator": "eq", "value": False},
            ]
        }
    ],
    "OR": [
        {
            "OR": [
                {"field": "year", "operator": "eq", "value": 2019},
                {"field": "tags", "operator": "in", "value": ["sport"]},
            ]
        }
    ],
    "NOT": [
        {
            "NOT": [
                {"field": "lang", "operator": "eq", "value": "en"},
                {"field": "year", "operator": "lt", "value": 2020},
            ]
        }
    ],
    "nested groups": [
        {
            "OR": [
                {
                    "AND": [
                        {"field": "lang", "operator": "eq", "value": "de"},
                        {"field": "rating", "operator": "gte", "value": 3.0},
                    ]
                },
                {"NOT": [{"field": "summary", "operator": "exists", "value": True}]},
            ]
        }
    ],
    "matches nothing": [{"field": "lang", "operator": "eq", "value": "xx"}],
}
# The equality filters of a search request (namespace, batch, ...), with and without a where.
FILTERS: dict[str, dict[str, Any]] = {
    "equality str": {"lang": "en"},
    "equality list": {"year": [2020, 2021]},
    "equality bool": {"public": False},
}


def _payload(rng: random.Random, i: int) -> dict[str, Any]:
    words = ["penguin", "ice", "sheet", "market", "shares", "sea", "birds", "penguins", "icesheet"]
    payload: dict[str, Any] = {
        "document_id": f"doc_{i:04d}",
        "lang": rng.choice(["en", "de", "fr", "es"]),
        "year": rng.choice([2019, 2020, 2021, 2022, 2023]),
        "rating": rng.choice([1.0, 2.5, 3.0, 4.75]),
        "score": rng.choice([1, 2.5, 3, 3.5, 4]),  # ints and floats in one field
        "public": rng.random() < 0.5,
        "tags": rng.sample(["news", "sport", "science", "tech"], rng.randint(0, 2)),
        "published": f"2024-{rng.randint(1, 4):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
        "meta": {"source": rng.choice(["web", "pdf"]), "pages": rng.randint(1, 9)},
        "text": " ".join(rng.sample(words, 3)),
    }
    kind = i % 3
    if kind == 0:
        payload["summary"] = "a summary"
    elif kind == 1:
        payload["summary"] = None
    return payload  # kind 2: no summary at all


def _points(seed: int) -> list[IndexPoint]:
    rng = random.Random(seed)
    points = []
    for i in range(POINTS):
        vector = [rng.uniform(-1, 1) for _ in range(DIM)]
        points.append(IndexPoint(str(uuid.UUID(int=rng.getrandbits(128))), {VECTOR: vector}, _payload(rng, i)))
    return points


@dataclass
class Pair:
    local: QdrantIndex
    server: QdrantIndex
    collection_id: str
    queries: list[list[float]]


@pytest.fixture(scope="module")
def qdrant_url(request: pytest.FixtureRequest) -> str:
    if stack_mode(os.environ) != "containers":
        pytest.skip(SKIP_REASON)
    stack = request.getfixturevalue("local_stack")  # skips with the Docker error where no engine answers
    return str(stack.env()["FEATUREBUS_QDRANT_URL"])


@pytest.fixture(params=sorted(SCHEMA))
async def pair(request: pytest.FixtureRequest, qdrant_url: str, tmp_path: Any) -> AsyncIterator[Pair]:
    distance = request.param
    cid = f"congruence_{distance}_{uuid.uuid4().hex[:8]}"
    local = QdrantIndex(AsyncQdrantClient(path=str(tmp_path / "qdrant")))  # as the indexer opens it
    server = QdrantIndex(AsyncQdrantClient(url=qdrant_url))
    points = _points(seed=13)
    for index in (local, server):
        await index.create(cid, {VECTOR: SCHEMA[distance]})
        await index.upsert(cid, points)
    rng = random.Random(29)
    queries = [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(3)]
    try:
        yield Pair(local, server, cid, queries)
    finally:
        for index in (local, server):
            await index.delete(cid)
            await index.close()


def assert_same_hits(local: list[Any], server: list[Any], what: str) -> None:
    """Same points, same payloads, scores within float32 noise, in the same order; points whose
    scores tie may come in either order (as qdrant-client's compare_client_results allows)."""
    assert len(local) == len(server), f"{what}: {len(local)} hits in local mode, {len(server)} on the server"
    for i, (a, b) in enumerate(zip(local, server, strict=True)):
        assert math.isclose(a.score, b.score, rel_tol=1e-4, abs_tol=1e-5), (
            f"{what}: hit {i} scores {a.score} / {b.score}"
        )

    def key(hit: Any) -> tuple[float, str]:
        return (round(hit.score, 4), hit.document_id)

    assert sorted(map(key, local)) == sorted(map(key, server)), f"{what}: other points"
    by_id = {h.document_id: h.payload for h in server}
    for hit in local:
        assert hit.payload == by_id[hit.document_id], f"{what}: payload of {hit.document_id}"


async def _compare_searches(pair: Pair, label: str) -> int:
    """Every filter case, with a small limit and with one above the collection (the whole filtered
    set, in order); returns how many cases matched at least one point."""
    matched = 0
    cases = [(name, {}, where) for name, where in WHERE.items()]
    cases += [(name, filters, []) for name, filters in FILTERS.items()]
    cases += [("equality and where", FILTERS["equality str"], WHERE["gte int"])]
    for name, filters, where in cases:
        for limit in (5, POINTS + 10):
            for q, query in enumerate(pair.queries[: 1 if limit > 5 else 3]):
                what = f"{label}, {name}, limit {limit}, query {q}"
                local = await pair.local.search(pair.collection_id, VECTOR, query, limit, filters, where)
                server = await pair.server.search(pair.collection_id, VECTOR, query, limit, filters, where)
                assert_same_hits(local, server, what)
                matched += bool(local) and limit > 5
    return matched


async def _compare_scroll_and_count(pair: Pair, label: str) -> None:
    name = collection_name(pair.collection_id)
    for case, where in {**WHERE, "everything": []}.items():
        query_filter = payload_filter({}, where)
        counts = [
            (await index.client.count(name, count_filter=query_filter, exact=True)).count
            for index in (pair.local, pair.server)
        ]
        assert counts[0] == counts[1], f"{label}, count {case}: local {counts[0]}, server {counts[1]}"
        pages: list[list[tuple[str, Any]]] = []
        for index in (pair.local, pair.server):
            seen: list[tuple[str, Any]] = []
            offset: Any = None
            while True:  # pages of 50, by id, as a reader of a whole collection pages
                records, offset = await index.client.scroll(
                    name, scroll_filter=query_filter, limit=50, offset=offset, with_payload=True
                )
                seen += [(str(r.id), r.payload) for r in records]
                if offset is None:
                    break
            pages.append(seen)
        assert pages[0] == pages[1], f"{label}, scroll {case}: the pages differ"
        assert len(pages[0]) == counts[0], f"{label}, scroll {case}: scroll and count disagree"


async def _wait_for_payload_indexes(pair: Pair, timeout: float = 60.0) -> set[str]:
    """Ask for every index the filter cases need (as searches do), then wait until the server
    built them (it creates them in the background) and is green."""
    wanted: set[str] = set()
    for where in WHERE.values():
        schemas = index_schemas({}, where)
        wanted |= set(schemas)
        pair.server.payload_indexes.ensure(collection_name(pair.collection_id), schemas)
    for filters in FILTERS.values():
        schemas = index_schemas(filters)
        wanted |= set(schemas)
        pair.server.payload_indexes.ensure(collection_name(pair.collection_id), schemas)
    await pair.server.payload_indexes.settle()
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await pair.server.client.get_collection(collection_name(pair.collection_id))
        if wanted <= set(info.payload_schema) and info.status == models.CollectionStatus.GREEN:
            return set(info.payload_schema)
        assert asyncio.get_running_loop().time() < deadline, (
            f"payload indexes {wanted - set(info.payload_schema)} not built"
        )
        await asyncio.sleep(0.5)


async def test_dense_search_under_every_filter_agrees(pair: Pair) -> None:
    matched = await _compare_searches(pair, "no payload indexes")
    assert matched >= len(WHERE) - 1, "the filter cases select points (only 'matches nothing' selects none)"


async def test_dense_search_agrees_with_the_payload_indexes_the_filters_create(pair: Pair) -> None:
    indexed = await _wait_for_payload_indexes(pair)
    assert {"lang", "year", "rating", "public", "published", "meta.source"} <= indexed
    await _compare_searches(pair, "with payload indexes")
    await _compare_scroll_and_count(pair, "with payload indexes")


async def test_scroll_and_count_under_every_filter_agree(pair: Pair) -> None:
    await _compare_scroll_and_count(pair, "no payload indexes")


async def test_the_comparison_tells_answers_apart() -> None:
    """The comparison itself (runs everywhere: no Qdrant): it refuses other points, other scores
    and other payloads, and accepts ties in either order."""
    from featurebus.common.queries import SearchHit

    def hit(doc: str, score: float, payload: dict[str, Any] | None = None) -> SearchHit:
        return SearchHit(document_id=doc, collection_id="c", score=score, payload=payload or {"d": doc})

    assert_same_hits(
        [hit("a", 0.9), hit("b", 0.5), hit("c", 0.5)], [hit("a", 0.9), hit("c", 0.5), hit("b", 0.5)], "ties"
    )
    for other in (
        [hit("a", 0.9), hit("x", 0.5), hit("c", 0.5)],
        [hit("a", 0.8), hit("b", 0.5), hit("c", 0.5)],
        [hit("a", 0.9, {"d": "changed"}), hit("b", 0.5), hit("c", 0.5)],
        [hit("a", 0.9), hit("b", 0.5)],
    ):
        with pytest.raises(AssertionError):
            assert_same_hits([hit("a", 0.9), hit("b", 0.5), hit("c", 0.5)], other, "different")
