"""Retrievers on the twins: what creation refuses (naming the field), what execute asks inference
and the indexer and answers, their failures, and that another namespace's retriever is not found."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.common.events import FeatureSpec, PluginManifest, VectorIndex
from featurebus.common.model_store import ModelFile, blob_key
from featurebus.common.queries import EnrichResult, LikeDocument, SearchHit
from featurebus.registry.auth import principal
from featurebus.registry.errors import Conflict, Invalid, NotFound, install_error_handlers
from featurebus.registry.query_services import Refused, Unreachable
from featurebus.registry.records import BlobUpload, Collection, Model, Namespace, Plugin
from featurebus.registry.routes.retrievers import CreateRetriever, ExecuteRetriever, Results, router
from featurebus.registry.usecases import retrievers

URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
PLUGIN = "text_embed_1_0_0"
FEATURE = "text_embed_v1_embedding"


def search(uri: str = URI, query: Any = "{{INPUT.query}}", **more: Any) -> dict[str, Any]:
    return {"feature_uri": uri, "query": query, **more}


def stages(*searches: dict[str, Any], limit: int | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"stage_type": "filter", "config": {"stage_id": "feature_search", "parameters": {"searches": list(searches)}}},
        {"stage_id": "filter", "parameters": {"filters": {"lang": "en"}}},
    ]
    if limit is not None:
        out.append({"stage_id": "limit", "parameters": {"limit": limit}})
    return out


async def plugin(t: Twins, ns: Namespace, *, deployed: bool = True, params: dict[str, Any] | None = None) -> Plugin:
    record = Plugin(
        id=f"{ns.id}/{PLUGIN}",
        org_id=ns.org_id,
        namespace_id=ns.id,
        plugin_id=PLUGIN,
        name="text_embed",
        version="1.0.0",
        archive_uri="s3://plugins/text_embed.zip",
        archive_sha256="0" * 64,
        size_bytes=100,
        scan_status="passed",
        manifest=PluginManifest(
            feature_extractor_name="text_embed",
            version="1.0.0",
            features=[FeatureSpec(feature_name=FEATURE, embedding_dim=3)],
        ),
        batch_enabled=deployed,
        params=params or {},
    )
    await t.tables.plugins.insert(record)
    return record


async def collection(t: Twins, ns: Namespace, name: str = "articles", **parameters: Any) -> Collection:
    record = Collection(
        id=f"col_{ns.namespace_name}_{name}",
        org_id=ns.org_id,
        namespace_id=ns.id,
        collection_name=name,
        feature_extractors=[{"feature_extractor_name": "text_embed", "plugin_id": PLUGIN, "parameters": parameters}],
        bucket_ids=["bkt_1"],
        vector_indexes=[VectorIndex(name=FEATURE, dimensions=3, distance="cosine", feature_uri=URI, plugin_id=PLUGIN)],
    )
    await t.tables.collections.insert(record)
    return record


def hit(doc: str, score: float, col: str = "col_docs_articles", **payload: Any) -> SearchHit:
    return SearchHit(document_id=doc, collection_id=col, score=score, payload=payload)


# ------------------------------------------------------------------------------------- creating


async def test_a_retriever_is_stored_with_its_collections_resolved_by_name_and_found_by_id_or_name() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    col = await collection(t, ns)
    made = await retrievers.create_retriever(t.c, ADMIN, "docs", "articles-search", ["articles"], stages(search()))
    assert made.namespace_id == ns.id and made.collection_ids == [col.id] and made.retriever_name == "articles-search"
    assert (await retrievers.get_retriever(t.c, ADMIN, ns.id, made.id)).id == made.id
    assert (await retrievers.get_retriever(t.c, ADMIN, "docs", "articles-search")).id == made.id
    assert (await retrievers.delete_retriever(t.c, ADMIN, "docs", "articles-search")).id == made.id
    with pytest.raises(NotFound, match="retriever 'articles-search' not found"):
        await retrievers.get_retriever(t.c, ADMIN, "docs", "articles-search")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            [{"stage_id": "rerank_by_magic"}, *stages(search())],
            r"stages\[0\]: stage 'rerank_by_magic' is not supported",
        ),
        (stages(search(uri="http://text_embed/v1")), r"stages\[0\]\.config\.parameters\.searches\[0\]\.feature_uri: "),
        (
            stages(search(uri="mixpeek://other@1.0.0/x")),
            r"searches\[0\]\.feature_uri: plugin other_1_0_0 is not in this namespace",
        ),
        (
            stages(search(), search(uri="mixpeek://text_embed@1.0.0/nope")),
            r"searches\[1\]\.feature_uri: plugin text_embed_1_0_0 has no feature 'nope'",
        ),
        (stages(search(top_k=0)), r"searches\[0\]\.top_k must be at least 1"),
        ([], "stages must be a non-empty list"),
    ],
)
async def test_creation_refuses_bad_stages_naming_the_stage_and_field(bad: Any, message: str) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    with pytest.raises(Invalid, match=message):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, bad)
    assert await t.tables.retrievers.find(namespace_id=ns.id) == []


async def test_creation_refuses_a_feature_none_of_the_retrievers_collections_has() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    articles = await t.tables.collections.get("col_docs_articles")
    assert articles is not None
    bare = articles.model_copy(update={"id": "col_bare", "collection_name": "bare", "vector_indexes": []})
    await t.tables.collections.insert(bare)
    with pytest.raises(
        Invalid, match=r"stages\[0\]\.config\.parameters\.searches\[0\]\.feature_uri: none of the "
    ) as caught:
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", ["bare"], stages(search()))
    assert "they have []" in str(caught.value) and "collection_identifiers" in (caught.value.hint or "")
    made = await retrievers.create_retriever(t.c, ADMIN, "docs", "r", ["bare", "articles"], stages(search()))
    assert made.collection_ids == ["col_bare", "col_docs_articles"]


QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "minLength": 1}, "k": {"type": "integer", "default": 3}},
    "required": ["query"],
}


async def test_an_input_schema_defines_every_placeholder_and_checks_and_completes_the_input() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    searching = stages(search(top_k="{{INPUT.k}}"))
    undefined = {"type": "object", "properties": {"query": {"type": "string"}}}
    with pytest.raises(
        Invalid, match=r"stages\[0\]\.config\.parameters\.searches\[0\]\.top_k: \{\{INPUT\.k\}\} is not defined"
    ):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, searching, undefined)
    with pytest.raises(Invalid, match=r"input_schema\.properties\.k\.type is not a JSON schema"):
        await retrievers.create_retriever(
            t.c, ADMIN, "docs", "r", None, searching, {"properties": {"k": {"type": "int"}}}
        )
    with pytest.raises(Invalid, match="input_schema must be a JSON schema of an object"):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, searching, {"type": "array"})
    made = await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, searching, QUERY_SCHEMA)
    assert made.input_schema == QUERY_SCHEMA
    t.queries.hits = [[hit(d, 0.9 - i / 10) for i, d in enumerate("abcde")]]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "cats"}, None)
    assert [h.document_id for h in done.hits] == ["a", "b", "c"]  # top_k from the schema's default
    with pytest.raises(Invalid, match=r"input\.k: 'many' is not of type 'integer'"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "cats", "k": "many"}, None)
    with pytest.raises(Invalid, match="input: 'query' is a required property"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {}, None)
    with pytest.raises(Invalid, match=r"input\.query: '' should be non-empty"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": ""}, None)


async def test_creation_refuses_unknown_collections_and_oversized_stages() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    with pytest.raises(NotFound, match="collection 'nope' not found in namespace 'docs'"):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", ["nope"], stages(search()))
    huge = stages(search(note="x" * (300 * 1024)))
    with pytest.raises(Invalid, match=r"stages are \d+ bytes as JSON; at most 262144"):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, huge)


@pytest.mark.parametrize(
    ("body", "message", "hint"),
    [
        ([1, 2], "the body must be an object", None),
        (
            {"name": "r", "collection_ids": ["col_x"], "stages": []},
            "retrievers take collection_identifiers, not collection_ids",
            "Add collection_identifiers to your retriever",
        ),
        ({"name": "", "stages": stages(search())}, "name is required: a string of 1 to 100 characters", '{"name"'),
        ({"name": "x" * 101, "stages": stages(search())}, "name is required", None),
        (
            {"name": "r", "collection_identifiers": "articles", "stages": stages(search())},
            "collection_identifiers must be a list of collection ids or names (strings)",
            None,
        ),
        ({"name": "r", "stages": {"a": 1}}, "stages must be a non-empty list", "start with a feature_search stage"),
        ({"name": "r", "stages": [{"stage_id": "limit"}]}, "a retriever needs a feature_search stage", "add a stage"),
    ],
)
def test_the_create_body_is_refused_with_the_field_named(body: Any, message: str, hint: str | None) -> None:
    with pytest.raises(Invalid) as refused:
        CreateRetriever.model_validate(body)
    assert refused.value.detail.startswith(message)
    assert hint is None or (refused.value.hint or "").startswith(hint)


def test_the_create_body_takes_retriever_name_or_name_and_ignores_unknown_fields() -> None:
    body = CreateRetriever.model_validate({"retriever_name": "a", "name": "b", "stages": stages(search()), "x": 1})
    assert (body.name, body.collection_identifiers) == ("a", None)
    assert CreateRetriever.model_validate({"retriever_name": "", "name": "b", "stages": stages(search())}).name == "b"


def test_the_execute_body_takes_input_or_inputs_and_checks_the_limit() -> None:
    assert ExecuteRetriever.model_validate({"inputs": {"query": "q"}, "limit": 5.0}).limit == 5
    assert ExecuteRetriever.model_validate({"input": {"query": "q"}}).input == {"query": "q"}
    for bad in ({"input": "q"}, {"query": "q"}, None):
        with pytest.raises(Invalid, match="input must be an object"):
            ExecuteRetriever.model_validate(bad)
    with pytest.raises(Invalid, match=r"limit must be at least 1 \(got 0\) \(after filling in input\)"):
        ExecuteRetriever.model_validate({"input": {}, "limit": 0})


async def test_over_http_a_refused_body_keeps_its_message_and_hint_and_a_good_one_is_created() -> None:
    t = twins()
    await plugin(t, await t.namespace("docs"))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.ctx = t.c
    app.dependency_overrides[principal] = lambda: ADMIN
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as http:
        refused = await http.post("/v1/namespaces/docs/retrievers", json={"name": "r", "collection_ids": ["c"]})
        made = await http.post("/v1/namespaces/docs/retrievers", json={"name": "r", "stages": stages(search())})
        got = await http.get(f"/v1/namespaces/docs/retrievers/{made.json()['retriever_id']}")
        deleted = await http.delete("/v1/namespaces/docs/retrievers/r")
    assert refused.status_code == 422 and refused.json() == {
        "detail": "retrievers take collection_identifiers, not collection_ids",
        "hint": "Add collection_identifiers to your retriever",
    }
    unstamped = {k: v for k, v in made.json().items() if k != "created_at"}  # stored to the millisecond
    assert made.status_code == 201 and got.json() | {"created_at": None} == unstamped | {"created_at": None}
    assert set(made.json()) == {
        "retriever_id",
        "retriever_name",
        "name",
        "collection_identifiers",
        "stages",
        "input_schema",
        "created_at",
    }
    assert (made.json()["name"], made.json()["collection_identifiers"]) == ("r", None)
    assert deleted.json() == {"deleted": True, "retriever_id": made.json()["retriever_id"]}


# ------------------------------------------------------------------------------------ executing


async def test_execute_embeds_the_queries_searches_with_the_vectors_and_returns_the_hits() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns, params={"model": "small", "batch": 8})
    col = await collection(t, ns, model="large")
    made = await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search(top_k=5)))
    t.queries.vector, t.queries.hits = [0.5, 0.5, 0.0], [[hit("d1", 0.9, title="cats"), hit("d2", 0.5)]]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "feline pets"}, None)

    [embed], [searched] = t.queries.embedded, t.queries.searched
    assert embed.namespace_id == ns.id and embed.request_id == searched.request_id
    [query] = embed.queries
    assert (query.feature_name, query.text) == (FEATURE, "feline pets")
    assert query.plugin.plugin_id == PLUGIN and query.plugin.parameters == {"model": "large", "batch": 8}
    assert (searched.namespace_id, searched.limit) == (ns.id, 6)  # one more: whether a next page exists
    assert searched.where == [{"field": "lang", "operator": "eq", "value": "en"}] and searched.filters == {}
    [vector_search] = searched.searches
    assert (vector_search.feature_name, vector_search.collection_ids) == (FEATURE, [col.id])
    assert vector_search.vector == [0.5, 0.5, 0.0]
    assert t.bus.published == []  # nothing goes over Kafka
    assert done.retriever_id == made.id and [h.document_id for h in done.hits] == ["d1", "d2"]
    shown = Results.of(done).model_dump()
    assert shown["results"][0] == {"title": "cats", "document_id": "d1", "collection_id": col.id, "score": 0.9}
    assert set(shown) == {"results", "retriever_id", "execution_time_ms", "stage_statistics", "pagination"}
    assert shown["pagination"] == {"offset": 0, "limit": 2, "next_cursor": None}
    # What each stage did: the search found two, the filter ran inside it.
    search_run, filter_run = shown["stage_statistics"]
    assert (search_run["stage_index"], search_run["stage_id"], search_run["output_count"]) == (0, "feature_search", 2)
    assert (filter_run["stage_index"], filter_run["stage_id"]) == (1, "filter")
    assert filter_run["note"] == "applied inside the vector search"


async def test_several_searches_are_fused_and_the_smallest_limit_wins() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    both = stages(search(), search(query={"text": "{{INPUT.other}}"}), limit=2)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", ["articles"], both)
    t.queries.hits = [[hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)], [hit("b", 0.99), hit("c", 0.5)]]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q", "other": "o"}, 50)
    [embed], [searched] = t.queries.embedded, t.queries.searched
    assert [q.text for q in embed.queries] == ["q", "o"] and searched.limit == 3 and len(searched.searches) == 2
    assert [h.document_id for h in done.hits] == ["b", "c"]  # in both lists: fused above "a"


def stage(stage_id: str, **parameters: Any) -> dict[str, Any]:
    return {"stage_name": stage_id, "stage_type": "sort", "config": {"stage_id": stage_id, "parameters": parameters}}


async def executed(after: list[dict[str, Any]], hits: list[SearchHit], limit: int | None = None) -> list[str]:
    """The document ids a retriever of a search (top_k 10) then ``after`` answers for ``hits``."""
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search(top_k=10)), *after])
    t.queries.hits = [hits]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, limit)
    return [h.document_id for h in done.hits]


DATED = [
    hit("a", 0.9, year=2019, lang="en", object_id="o1"),
    hit("b", 0.8, year=2024, lang="de", object_id="o1"),
    hit("c", 0.7, lang="en", object_id="o2"),  # no year
    hit("d", 0.6, year=2024, lang="en", object_id="o3", meta={"views": 7}),
    hit("e", 0.5, year=2021, lang="de", object_id="o2", meta={"views": 70}),
]


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ([stage("sort", sort_by=[{"field": "year", "direction": "desc"}])], ["b", "d", "e", "a", "c"]),
        ([stage("sort", field="year")], ["a", "e", "b", "d", "c"]),  # asc by default; ties keep the score order
        ([stage("sort", sort_by=[{"field": "lang"}, {"field": "year", "direction": "desc"}])], list("bedac")),
        ([stage("sort", field="meta.views", direction="desc")], ["e", "d", "a", "b", "c"]),  # nested; missing last
        ([stage("sort", field="score", direction="asc")], ["e", "d", "c", "b", "a"]),
        ([stage("dedupe")], ["a", "c", "d"]),  # the best of each object_id
        ([stage("group_by", field="lang", max_per_group=2)], ["a", "b", "c", "e"]),
        (
            [stage("sort", field="year", direction="desc"), {"stage_id": "limit", "parameters": {"limit": 2}}],
            ["b", "d"],
        ),
    ],
)
async def test_sort_and_group_stages_act_on_the_search_results_in_their_order(
    after: list[dict[str, Any]], expected: list[str]
) -> None:
    assert await executed(after, DATED) == expected


async def test_a_group_by_searches_for_more_results_than_it_answers() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), stage("dedupe")])
    t.queries.hits = [[hit(f"d{i}", 1 - i / 100, object_id=f"o{i // 3}") for i in range(30)]]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 4)
    [searched] = t.queries.searched
    assert searched.limit == 25  # five times the 4 wanted (and one more, for a next page)
    assert [h.document_id for h in done.hits] == ["d0", "d3", "d6", "d9"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (stage("rerank"), r"stages\[2\]\.config\.parameters\.model must name a reranker"),
        (stage("rerank", model="bge", top_n=0), r"stages\[2\]\.config\.parameters\.top_n must be at least 1"),
        (stage("rerank", model="bge", text_field=3), r"parameters\.text_field must name the payload field"),
        (stage("sort"), r"stages\[2\]\.config\.parameters\.sort_by must list the fields"),
        (stage("sort", sort_by=[{"field": "year", "direction": "up"}]), r"sort_by\[0\]\.direction must be 'asc' or"),
        (stage("sort", sort_by=[{"direction": "asc"}]), r"sort_by\[0\]\.field must name a payload field"),
        (stage("group_by"), r"stages\[2\]\.config\.parameters\.field must name the payload field"),
        (stage("group_by", field="lang", max_per_group=0), r"max_per_group must be at least 1"),
    ],
)
async def test_creation_refuses_malformed_rerank_sort_and_group_stages(bad: dict[str, Any], message: str) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    with pytest.raises(Invalid, match=message):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), bad])


# ------------------------------------------------------------------------------------ reranking


async def import_model(t: Twins, name: str, architectures: list[str]) -> None:
    """A ready cluster model, as ``featurebus models import`` leaves it (its config.json stored)."""
    config = json.dumps({"architectures": architectures}).encode()
    sha = hashlib.sha256(config).hexdigest()
    await t.store.put_bytes(blob_key(None, sha), config)
    await t.tables.models.insert(
        Model(
            id=f"mdl_{name.replace('/', '_')}",
            org_id="org_1",
            name=name,
            revision="r1",
            files=[ModelFile(path="config.json", sha256=sha, size_bytes=len(config))],
            expires_at=datetime.now(UTC),
            status="ready",
        )
    )


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "bge",
            r"stages\[2\]\.config\.parameters\.model: reranker 'bge' is not installed; available: "
            r"\['intfloat/multilingual-e5-small', 'acme/ce'\], or a plugin's feature_uri",
        ),
        ("acme/bert", r"stages\[2\]\.config\.parameters\.model: model 'acme/bert' is not a cross-encoder"),
        ("mixpeek://text_embed@1.0.0/nope", r"parameters\.model: plugin text_embed_1_0_0 has no feature 'nope'"),
    ],
)
async def test_a_rerank_naming_a_reranker_that_is_not_installed_is_refused_with_the_available_ones(
    model: str, message: str
) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await import_model(t, "acme/ce", ["BertForSequenceClassification"])
    await import_model(t, "acme/bert", ["BertModel"])
    with pytest.raises(Invalid, match=message):
        await retrievers.create_retriever(
            t.c, ADMIN, "docs", "r", None, [*stages(search()), stage("rerank", model=model)]
        )
    for good in ("intfloat/multilingual-e5-small", "acme/ce", URI):
        await retrievers.create_retriever(
            t.c, ADMIN, "docs", good, None, [*stages(search()), stage("rerank", model=good)]
        )


TEXTS = [
    hit("a", 0.9, text="cat"),
    hit("b", 0.8, text="a long text about cats"),
    hit("c", 0.7, title="no text here"),
    hit("d", 0.6, text="medium text"),
    hit("e", 0.5, text="the longest text of them all, about cats"),
]


async def test_a_rerank_re_scores_the_first_top_n_by_the_reranker_and_keeps_the_search_score() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    rerank = stage("rerank", model="intfloat/multilingual-e5-small", top_n=4)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), rerank])
    t.queries.hits = [TEXTS]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "cats"}, 3)
    [searched] = t.queries.searched
    assert searched.limit == 4  # the search gives what the rerank re-scores
    [asked] = t.queries.reranked
    assert (asked.model, asked.query, asked.namespace_id) == ("intfloat/multilingual-e5-small", "cats", ns.id)
    assert asked.documents == ["cat", "a long text about cats", "medium text"]  # the first four with a text
    # The twin scores by length: b (22) > d (11) > a (3); c has no text and follows them.
    assert [(h.document_id, h.score, h.search_score) for h in done.hits] == [
        ("b", 22.0, 0.8),
        ("d", 11.0, 0.6),
        ("a", 3.0, 0.9),
    ]
    shown = Results.of(done, ExecuteRetriever(input={}, explain=True)).model_dump()
    assert shown["results"][0]["search_score"] == 0.8
    assert shown["results"][0]["explain"] == [
        {"stage_index": 0, "stage_id": "feature_search", "rank": 2, "score": 0.8},
        {"stage_index": 2, "stage_id": "rerank", "rank": 1, "score": 22.0, "search_score": 0.8},
        {"stage_index": None, "stage_id": "limit", "rank": 1, "score": 22.0, "search_score": 0.8},
    ]
    runs = {r["stage_id"]: r for r in shown["stage_statistics"]}
    assert (runs["rerank"]["input_count"], runs["rerank"]["output_count"]) == (4, 4)
    assert [d["document_id"] for d in runs["limit"]["dropped"]] == ["c"]


async def test_a_rerank_takes_its_own_query_and_text_field_and_refuses_results_without_that_text() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    rerank = stage("rerank", model="intfloat/multilingual-e5-small", query="{{INPUT.question}}", text_field="title")
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), rerank])
    t.queries.hits = [TEXTS]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q", "question": "which?"}, None)
    assert [t.queries.reranked[0].query, t.queries.reranked[0].documents] == ["which?", ["no text here"]]
    assert [h.document_id for h in done.hits] == ["c", "a", "b", "d", "e"]
    t.queries.hits = [[hit("x", 0.5, caption="only a caption")]]
    with pytest.raises(Invalid, match=r"parameters\.text_field: none of the 1 results has a text in payload field"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q", "question": "?"}, None)


async def test_a_rerank_by_a_plugin_scores_by_the_cosine_of_its_query_path_vectors() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns, model="large")
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), stage("rerank", model=URI)])
    t.queries.hits = [[hit("a", 0.9, text="far"), hit("b", 0.8, text="near"), hit("c", 0.7, text="aside")]]
    t.queries.vectors_by_text = {"q": [1.0, 0.0, 0.0], "far": [0.0, 1.0, 0.0], "near": [2.0, 0.1, 0.0]}
    t.queries.vectors_by_text["aside"] = [-1.0, 0.0, 0.0]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    _, rescored = t.queries.embedded
    assert [q.text for q in rescored.queries] == ["q", "far", "near", "aside"]
    assert all(q.plugin.parameters == {"model": "large"} for q in rescored.queries)
    assert [h.document_id for h in done.hits] == ["b", "a", "c"]
    assert done.hits[0].score == pytest.approx(2 / (4.01**0.5))


async def test_a_reranker_that_fails_is_a_502_with_its_reason() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    rerank = stage("rerank", model="intfloat/multilingual-e5-small")
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), rerank])
    t.queries.hits = [TEXTS]
    t.queries.rerank_failure = Refused("inference", 422, "reranker x failed to load: boom", "import it again")
    with pytest.raises(retrievers.SearchFailed, match="reranker x failed to load: boom"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)


# ------------------------------------------------------------------------------------ blob queries

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


async def blob_retriever(t: Twins) -> Namespace:
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search(query="{{INPUT.image}}")))
    t.queries.hits = [[hit("a", 0.9)]]
    return ns


async def verified_upload(t: Twins, ns: Namespace, upload_id: str, data: bytes, mime: str) -> str:
    key = f"blobs/{ns.org_id}/{ns.id}/bkt_1/{upload_id}/q.png"
    uri = await t.c.store.put_bytes(key, data)
    upload = BlobUpload(
        id=upload_id,
        org_id=ns.org_id,
        namespace_id=ns.id,
        bucket_id="bkt_1",
        filename="q.png",
        content_type=mime,
        size_bytes=len(data),
        key=f"uploads/blobs/{upload_id}",
        expires_at=datetime.now(UTC),
        status="verified",
        uri=uri,
        mime_type=mime,
        verified_sha256=hashlib.sha256(data).hexdigest(),
    )
    await t.tables.blob_uploads.insert(upload)
    return uri


async def test_an_image_query_by_upload_url_or_inline_bytes_goes_to_the_plugin_as_a_blob() -> None:
    t = twins()
    ns = await blob_retriever(t)
    uri = await verified_upload(t, ns, "upl_q", PNG, "image/png")
    for query in ({"upload_id": "upl_q"}, {"url": uri}):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"image": query}, None)
    inline = {"base64": base64.b64encode(PNG).decode(), "mime_type": "image/jpeg"}  # the bytes say PNG
    await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"image": inline}, None)
    blobs = [request.queries[0].blob for request in t.queries.embedded]
    assert all(b is not None for b in blobs) and [q.queries[0].text for q in t.queries.embedded] == [""] * 3
    assert [(b.uri, b.mime_type, b.blob_type, b.size_bytes) for b in blobs[:2] if b] == [
        (uri, "image/png", "image", 32)
    ] * 2
    sent = blobs[2]
    assert sent is not None and (sent.mime_type, sent.blob_type, sent.size_bytes) == ("image/png", "image", 32)
    assert sent.uri.startswith(t.c.store.uri(f"queries/{ns.org_id}/{ns.id}/"))
    await t.c.settle()  # the request's own bytes are deleted after the execution
    assert await t.c.store.keys("queries/") == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"upload_id": "upl_other"}, r"searches\[0\]\.query\.upload_id 'upl_other' is not an upload of this namespace"),
        (
            {"url": "s3://elsewhere/blobs/org_1/ns_docs/x.png"},
            r"searches\[0\]\.query\.url .* is not a blob of this namespace",
        ),
        ({"url": "BLOBS/org_1/ns_other/bkt/upl/x.png"}, r"is not a blob of this namespace"),
        ({"url": "BLOBS/org_1/ns_docs/../ns_other/upl/x.png"}, r"is not a blob of this namespace"),
        ({"url": "BLOBS/org_1/ns_docs/bkt_1/gone/x.png"}, r"query\.url .*: there is no such blob"),
        ({"base64": "not base64!"}, r"searches\[0\]\.query\.base64 is not base64"),
        ({"base64": base64.b64encode(b"just some words").decode()}, r"the blob's type is not known from its first"),
        (
            {"base64": base64.b64encode(b"words").decode(), "mime_type": "text/plain"},
            r"a text/plain blob cannot be a query",
        ),
        ({"base64": "eA==", "url": "s3://x/y"}, r"query names its blob by \['url', 'base64'\]: give one of them"),
        ({"upload_id": 7}, r"query\.upload_id must be a non-empty string"),
    ],
)
async def test_a_blob_query_that_names_no_blob_of_the_namespace_is_refused_naming_the_field(
    query: dict[str, Any], message: str
) -> None:
    t = twins()
    ns = await blob_retriever(t)
    other = await t.namespace("other")
    await verified_upload(t, other, "upl_other", PNG, "image/png")
    if isinstance(query.get("url"), str):
        query = {**query, "url": query["url"].replace("BLOBS/", t.c.store.uri("blobs/"))}
    with pytest.raises(Invalid, match=message):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"image": query}, None)
    assert t.queries.embedded == [] and ns.id == "ns_docs"


async def test_an_inline_query_blob_over_the_limit_is_refused_before_it_is_stored() -> None:
    t = twins()
    await blob_retriever(t)
    t.c.settings.max_query_blob_bytes = 16
    with pytest.raises(Invalid, match=r"query\.base64 holds more than 16 bytes") as caught:
        await retrievers.execute_retriever(
            t.c, ADMIN, "docs", "r", {"image": {"base64": base64.b64encode(PNG).decode()}}, None
        )
    assert "upload_id" in (caught.value.hint or "") and await t.c.store.keys("queries/") == []


# ------------------------------------------------------------------------------------ LLM stages

VERDICT = {"type": "object", "properties": {"relevant": {"type": "boolean"}}, "required": ["relevant"]}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, r"stages\[2\]\.config\.parameters\.prompt must be the text to ask about each result"),
        ({"prompt": "Is {{DOC.text}} about {{QUERY}}?"}, r"parameters\.prompt: '\{\{QUERY\}\}' is no placeholder"),
        ({"prompt": "{{DOC.}}"}, r"parameters\.prompt: '\{\{DOC\.\}\}' is no placeholder"),
        ({"prompt": "p", "output_field": "a b"}, r"parameters\.output_field must be a payload field name"),
        ({"prompt": "p", "output_schema": {"type": "string"}}, r"output_schema must be a JSON schema of an object"),
        (
            {"prompt": "p", "output_schema": {"type": "object", "properties": {"x": {"type": "nope"}}}},
            "not a JSON schema",
        ),
        ({"prompt": "p", "top_n": 500}, r"parameters\.top_n is 500; an LLM stage asks about at most 200"),
        ({"prompt": "p", "temperature": 3}, r"parameters\.temperature must be from 0 to 2"),
        ({"prompt": "p", "image_field": ""}, r"parameters\.image_field must be a non-empty string"),
    ],
)
async def test_creation_refuses_malformed_llm_stages_naming_the_field(params: dict[str, Any], message: str) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    with pytest.raises(Invalid, match=message):
        await retrievers.create_retriever(
            t.c, ADMIN, "docs", "r", None, [*stages(search()), stage("llm_enrich", **params)]
        )


async def test_an_llm_stage_asks_about_each_result_and_writes_the_checked_answer_to_its_field() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    llm = stage(
        "agentic_enrich",
        prompt="Does '{{DOC.text}}' (score {{DOC.score}}) answer {{INPUT.query}}?",
        output_field="verdict",
        output_schema=VERDICT,
        instruction="answer as JSON",
        model="small-llm",
        top_n=3,
    )
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), llm])
    t.queries.hits = [TEXTS]
    asked = ["Does 'cat' (score 0.9) answer cats?", "Does 'a long text about cats' (score 0.8) answer cats?"]
    t.queries.enrich_answers = {
        asked[0]: EnrichResult(text='{"relevant": true}', data={"relevant": True}),
        asked[1]: EnrichResult(text='{"relevant": false}', data={"relevant": False}),
    }
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "cats"}, None)
    [request] = t.queries.enriched
    assert (request.instruction, request.model, request.output_schema) == ("answer as JSON", "small-llm", VERDICT)
    assert [i.text for i in request.items] == asked  # c has no text: it is not asked about
    by_id = {h.document_id: h for h in done.hits}
    assert [h.document_id for h in done.hits] == ["a", "b", "c", "d", "e"]  # the order stays
    assert by_id["a"].payload["verdict"] == {"relevant": True} and not by_id["a"].stage_errors
    assert by_id["b"].payload["verdict"] == {"relevant": False}
    [missing] = by_id["c"].stage_errors
    assert missing["stage_index"] == 2 and missing["stage_id"] == "agentic_enrich"
    assert "the result has no field 'text' for {{DOC.text}}" in missing["error"] and "verdict" not in by_id["c"].payload
    assert "verdict" not in by_id["d"].payload and not by_id["d"].stage_errors  # past top_n: not asked
    shown = Results.of(done, ExecuteRetriever(input={}, explain=True)).model_dump()
    runs = {r["stage_id"]: r for r in shown["stage_statistics"]}
    assert runs["agentic_enrich"]["note"] == "1 of 3 results failed: each has its reason in stage_errors"
    assert shown["results"][2]["stage_errors"] == by_id["c"].stage_errors


async def test_an_answer_that_does_not_match_the_output_schema_or_a_failed_call_is_that_results_error() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    llm = stage("llm_enrich", prompt="{{DOC.text}}", output_field="verdict", output_schema=VERDICT)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), llm])
    t.queries.hits = [[hit("a", 0.9, text="one"), hit("b", 0.8, text="two"), hit("c", 0.7, text="three")]]
    t.queries.enrich_answers = {
        "one": EnrichResult(data={"relevant": "maybe"}),
        "two": EnrichResult(error="the LLM provider answered 500: overloaded", hint="retry"),
        "three": EnrichResult(data={"relevant": False}),
    }
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    a, b, c = done.hits
    assert a.stage_errors[0]["error"] == (
        "the LLM's answer does not match stages[2].config.parameters.output_schema at relevant: "
        "'maybe' is not of type 'boolean'"
    )
    assert (b.stage_errors[0]["error"], b.stage_errors[0]["hint"]) == (
        "the LLM provider answered 500: overloaded",
        "retry",
    )
    assert c.payload["verdict"] == {"relevant": False} and not c.stage_errors
    assert "verdict" not in a.payload and "verdict" not in b.payload


async def test_without_a_schema_the_text_is_kept_and_images_are_sent_from_the_image_field() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    llm = stage("llm_enrich", prompt="Describe {{DOC.meta.title}}", image_field="thumb")
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, [*stages(search()), llm])
    t.queries.hits = [
        [hit("a", 0.9, meta={"title": "A"}, thumb="s3://b/blobs/o/n/x.png"), hit("b", 0.8, meta={"title": "B"})]
    ]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    [request] = t.queries.enriched
    assert [(i.text, i.images) for i in request.items] == [("Describe A", ["s3://b/blobs/o/n/x.png"])]
    assert done.hits[0].payload["llm_output"] == "Describe A"  # the twin echoes the prompt
    assert "holds no image URL" in done.hits[1].stage_errors[0]["error"]


async def test_an_llm_provider_that_is_not_configured_fails_the_execution_with_the_setting_named() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(
        t.c, ADMIN, "docs", "r", None, [*stages(search()), stage("llm_enrich", prompt="p")]
    )
    t.queries.hits = [TEXTS]
    t.queries.enrich_failure = Refused("inference", 422, "no LLM provider is configured", "set FEATUREBUS_LLM_BASE_URL")
    with pytest.raises(retrievers.SearchFailed, match="no LLM provider is configured") as caught:
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    assert caught.value.hint == "set FEATUREBUS_LLM_BASE_URL"


async def test_weighted_fusion_sums_weighted_scores_and_min_score_and_top_k_cut_each_search() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    searches = [search(weight=2.0, min_score=0.5, top_k=10), search(top_k=1)]
    body = [{"stage_id": "feature_search", "parameters": {"searches": searches, "fusion": "weighted"}}]
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, body)
    t.queries.hits = [[hit("a", 0.6), hit("b", 0.55), hit("c", 0.4)], [hit("b", 0.9), hit("a", 0.8)]]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    # a: 2·0.6 = 1.2 (its second-search hit is past that search's top_k of 1); b: 2·0.55 + 0.9 = 2.0;
    # c is under the first search's min_score.
    assert [(h.document_id, round(h.score, 6)) for h in done.hits] == [("b", 2.0), ("a", 1.2)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fusion": "max"}, r"parameters\.fusion must be one of \['rrf', 'weighted'\] \(got 'max'\)"),
        ({"searches": [search(weight=-1)]}, r"searches\[0\]\.weight must be at least 0"),
        ({"searches": [search(min_score="high")]}, r"searches\[0\]\.min_score must be a number \(got 'str'\)"),
    ],
)
async def test_creation_refuses_bad_fusion_weights_and_min_scores(params: dict[str, Any], message: str) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    body = [{"stage_id": "feature_search", "parameters": {"searches": [search()], **params}}]
    with pytest.raises(Invalid, match=message):
        await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, body)


# ------------------------------------------------------- more like this, pages, projections


async def test_more_like_a_stored_document_searches_by_its_vector_without_embedding() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    col = await collection(t, ns)
    both = [search(query={"document_id": "{{INPUT.like}}", "collection_id": "articles"}), search()]
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(*both))
    t.queries.hits = [[hit("b", 0.9)], [hit("c", 0.8)]]
    await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"like": "doc_a", "query": "q"}, None)
    [embed], [searched] = t.queries.embedded, t.queries.searched
    assert [q.text for q in embed.queries] == ["q"]  # only the text is embedded
    liked, texted = searched.searches
    assert liked.like == LikeDocument(document_id="doc_a", plugin_id=PLUGIN, collection_id=col.id)
    assert liked.vector == [] and texted.like is None and texted.vector == t.queries.vector
    with pytest.raises(Invalid, match=r"searches\[0\]\.query\.document_id must be a document's id"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"like": "", "query": "q"}, None)
    await t.tables.collections.delete(col.id)
    with pytest.raises(NotFound, match="collection 'articles'"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"like": "doc_a", "query": "q"}, None)


async def test_pages_follow_each_other_by_cursor_and_a_foreign_cursor_is_refused() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search()))
    t.queries.hits = [[hit(f"d{i}", 1 - i / 10) for i in range(5)]]
    seen, cursor, offsets = [], None, []
    while True:
        page = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 2, cursor=cursor)
        seen += [h.document_id for h in page.hits]
        offsets.append(page.offset)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["d0", "d1", "d2", "d3", "d4"] and offsets == [0, 2, 4]
    assert [s.limit for s in t.queries.searched] == [3, 5, 7]  # each page's end and one more
    shown = Results.of(await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 2, offset=1))
    assert [r["document_id"] for r in shown.results] == ["d1", "d2"] and shown.pagination["offset"] == 1
    first = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 2)
    for inputs, limit in (({"query": "other"}, 2), ({"query": "q"}, 3)):
        with pytest.raises(Invalid, match="cursor was given for another retriever, input or limit"):
            await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", inputs, limit, cursor=first.next_cursor)
    with pytest.raises(Invalid, match="cursor is not one this API gave"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 2, cursor="bm9wZQ")
    with pytest.raises(Invalid, match="offset 995 \\+ limit 10 goes past the 1000 results"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, 10, offset=995)


def test_the_execute_body_checks_paging_and_projections() -> None:
    for body, message in (
        ({"offset": -1}, "offset must be a whole number from 0 to 1000"),
        ({"offset": 1, "cursor": "x"}, "give offset or cursor, not both"),
        ({"include_fields": "title"}, "include_fields must list payload field names"),
        ({"exclude_fields": [""]}, "exclude_fields must list payload field names"),
        ({"return_vectors": "yes"}, "return_vectors must be true or false"),
    ):
        with pytest.raises(Invalid, match=message):
            ExecuteRetriever.model_validate({"input": {}, **body})


async def test_results_carry_the_fields_asked_for_and_the_vectors_they_were_found_by() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search(), search()))
    found = hit("a", 0.9, title="t", text="long", meta={"views": 3, "lang": "en"})
    t.queries.hits = [
        [found.model_copy(update={"vectors": {"v1": [1.0]}})],
        [found.model_copy(update={"vectors": {"v2": [2.0]}})],
    ]
    done = await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None, with_vectors=True)
    assert t.queries.searched[0].with_vectors is True
    body = ExecuteRetriever.model_validate(
        {"input": {}, "include_fields": ["title", "meta.lang", "nope"], "return_vectors": True}
    )
    [result] = Results.of(done, body).results
    assert {k: v for k, v in result.items() if k != "score"} == {
        "title": "t",
        "meta": {"lang": "en"},
        "document_id": "a",
        "collection_id": "col_docs_articles",
        "vectors": {"v1": [1.0], "v2": [2.0]},  # found by both searches
    }
    body = ExecuteRetriever.model_validate({"input": {}, "exclude_fields": ["text", "meta.views"]})
    [result] = Results.of(done, body).results
    assert result["meta"] == {"lang": "en"} and "text" not in result and "vectors" not in result
    assert done.hits[0].payload["meta"] == {"views": 3, "lang": "en"}  # the hit itself is untouched


# ------------------------------------------------------------------------------------- history


async def test_executions_are_kept_newest_first_failed_ones_with_their_error_and_the_oldest_dropped() -> None:
    t = twins(retriever_history=3)
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    made = await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search()))
    t.queries.hits = [[hit("a", 0.9), hit("b", 0.8)]]
    for i in range(5):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": f"q{i}"}, 1 if i == 4 else None)
    with pytest.raises(Invalid):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {}, None)
    await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "x" * (20 * 1024)}, None)
    await t.c.settle()
    kept, total = await retrievers.list_executions(t.c, ADMIN, "docs", "r", 0, 10)
    assert total == 3 and len(kept) == 3  # the oldest four went (a fourth past 3 is pruned at once)
    big, failed, last_ok = kept
    assert re.fullmatch(r"2\d{4} bytes of input, more than 16384", big.inputs["_not_kept"])
    assert failed.status == "failed" and failed.inputs == {} and failed.result_count == 0
    assert failed.error == {
        "status": 422,
        "detail": "input.query is required by this retriever",
        "hint": '{"input": {"query": ...}}',
    }
    assert (last_ok.status, last_ok.inputs, last_ok.limit, last_ok.result_count) == ("completed", {"query": "q4"}, 1, 1)
    assert [s["stage_id"] for s in last_ok.stage_statistics] == ["feature_search", "filter", "limit"]
    assert all(e.retriever_id == made.id for e in kept)
    second, _ = await retrievers.list_executions(t.c, ADMIN, "docs", made.id, 1, 1)
    assert [e.id for e in second] == [failed.id]
    assert (await retrievers.list_executions(t.c, ADMIN, "docs", "r", 3, 10))[0] == []
    with pytest.raises(NotFound):
        await retrievers.list_executions(t.c, limited_to("ns_other"), "docs", "r", 0, 10)
    await retrievers.delete_retriever(t.c, ADMIN, "docs", "r")
    await t.c.settle()
    assert await t.tables.retriever_executions.find(retriever_id=made.id) == []


async def test_a_history_of_zero_keeps_nothing() -> None:
    t = twins(retriever_history=0)
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search()))
    t.queries.hits = [[hit("a", 0.9)]]
    await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    await t.c.settle()
    assert await t.tables.retriever_executions.find() == []


async def test_execute_refuses_missing_input_unready_plugins_and_searches_with_no_collection() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns, deployed=False)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search()))
    with pytest.raises(Invalid, match=r"input\.query is required by this retriever") as missing:
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {}, None)
    assert missing.value.hint == '{"input": {"query": ...}}'
    with pytest.raises(Invalid, match=r"searches\[0\]\.query: each search needs a text query"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": ""}, None)
    with pytest.raises(Invalid, match=r"searches\[0\]\.feature_uri: no collection of this namespace has the feature"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    await collection(t, ns)
    with pytest.raises(Conflict, match="plugin text_embed_1_0_0 is not deployed for batch processing"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    assert t.queries.embedded == [] and t.queries.searched == []


async def test_queries_that_add_up_to_too_much_are_refused_before_any_call() -> None:
    t = twins(max_inline_text_bytes=400 * 1024)
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search(), search()))
    with pytest.raises(Invalid, match="input: the queries add up to more than 524288 bytes"):
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "x" * (300 * 1024)}, None)
    assert t.queries.embedded == []


@pytest.mark.parametrize(
    ("embed_failure", "search_failure", "kind", "detail", "hint"),
    [
        (
            Unreachable("inference", "http://127.0.0.1:8010/internal/v1/embed", "no answer within 30s"),
            None,
            retrievers.NoAnswer,
            "no answer from the inference service at http://127.0.0.1:8010/internal/v1/embed: no answer within 30s",
            "the inference service may be down or busy; check its log (svc-inference.log) and retry",
        ),
        (
            None,
            Unreachable("indexer", "http://127.0.0.1:8020/internal/v1/search", "not listening (connection refused)"),
            retrievers.NoAnswer,
            "no answer from the indexer service at http://127.0.0.1:8020/internal/v1/search: not listening",
            "the indexer service may be down or busy",
        ),
        (
            Refused("inference", 422, "text_embed_1_0_0 could not embed the query: boom", "fix the plugin"),
            None,
            retrievers.SearchFailed,
            "text_embed_1_0_0 could not embed the query: boom",
            "fix the plugin",
        ),
        (
            None,
            Refused("indexer", 422, "search 0 ('v'): collection col_x does not exist in the index"),
            retrievers.SearchFailed,
            "search 0 ('v'): collection col_x does not exist in the index",
            None,
        ),
        (
            None,
            Refused("indexer", 401, "the indexer internal API needs Authorization", "give every service the same"),
            retrievers.SearchFailed,
            "the indexer service answered 401: the indexer internal API needs Authorization",
            "give every service the same",
        ),
    ],
)
async def test_a_service_that_does_not_answer_is_a_504_and_one_that_refuses_a_502_with_its_reason(
    embed_failure: Exception | None, search_failure: Exception | None, kind: type, detail: str, hint: str | None
) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await plugin(t, ns)
    await collection(t, ns)
    await retrievers.create_retriever(t.c, ADMIN, "docs", "r", None, stages(search()))
    t.queries.embed_failure, t.queries.search_failure = embed_failure, search_failure
    with pytest.raises(kind) as failed:
        await retrievers.execute_retriever(t.c, ADMIN, "docs", "r", {"query": "q"}, None)
    assert failed.value.status == (504 if kind is retrievers.NoAnswer else 502)
    assert failed.value.detail.startswith(detail)
    assert (failed.value.hint or "").startswith(hint) if hint else failed.value.hint is None
    assert len(t.queries.searched) == (0 if embed_failure else 1)  # no search without its vectors


# ------------------------------------------------------------------------------------- tenancy


async def test_another_namespaces_retriever_is_not_found() -> None:
    t = twins()
    docs, other = await t.namespace("docs"), await t.namespace("other")
    for ns in (docs, other):
        await plugin(t, ns)
        await collection(t, ns)
    theirs = await retrievers.create_retriever(t.c, ADMIN, "other", "theirs", ["articles"], stages(search()))
    for ident in (theirs.id, "theirs"):
        with pytest.raises(NotFound, match="not found"):
            await retrievers.get_retriever(t.c, ADMIN, "docs", ident)
        with pytest.raises(NotFound):
            await retrievers.delete_retriever(t.c, ADMIN, "docs", ident)
        with pytest.raises(NotFound):
            await retrievers.execute_retriever(t.c, ADMIN, "docs", ident, {"query": "q"}, None)
    mine = limited_to(docs.id)
    for attempt in (
        retrievers.get_retriever(t.c, mine, "other", theirs.id),
        retrievers.execute_retriever(t.c, mine, "other", theirs.id, {"query": "q"}, None),
        retrievers.create_retriever(t.c, mine, "other", "mine", None, stages(search())),
    ):
        with pytest.raises(NotFound, match="namespace 'other' not found"):
            await attempt
    with pytest.raises(NotFound, match="collection 'col_other_articles' not found in namespace 'docs'"):
        await retrievers.create_retriever(t.c, mine, "docs", "mine", ["col_other_articles"], stages(search()))
    assert await t.tables.retrievers.get(theirs.id) is not None
    assert t.queries.embedded == []
