"""Bad request bodies and retriever stages are refused with the field named, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from featurebus.registry.body_guard import BodyGuard
from featurebus.registry.bucket_schema import SchemaError, check_schema, parse_blobs
from featurebus.registry.json_body import MAX_DEPTH, BodyProblem, parse_json_body
from featurebus.registry.retriever_stages import MAX_LIMIT, StageProblem, check_stages, plan_execution

URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"


def search_stage(**params: Any) -> dict[str, Any]:
    return {"stage_id": "feature_search", "config": {"stage_id": "feature_search", "parameters": params}}


def refused(raw: bytes) -> str:
    with pytest.raises(BodyProblem) as caught:
        parse_json_body(raw)
    return str(caught.value)


def test_sound_json_parses_and_unsound_json_names_the_place() -> None:
    assert parse_json_body(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}
    assert refused(b'{"a": ').startswith("body: not valid JSON")
    assert "not UTF-8" in refused(b'{"a": "\xff\xfe"}')
    assert "NaN" in refused(b'{"limit": NaN}')
    assert "Infinity" in refused(b'{"limit": -Infinity}')
    assert refused(b'{"limit": 1e999}').startswith("limit: the number is too large")
    assert refused(b'{"objects": [{"n": 99999999999999999999}]}').startswith("objects[0].n: ")
    assert "digits" in refused(b'{"n": ' + b"9" * 5000 + b"}")
    assert "surrogate" in refused(b'{"text": "\\ud800"}')
    assert "NUL" in refused(b'{"params": {"a\\u0000b": 1}}')


def test_nesting_is_bounded_both_below_and_above_the_parsers_recursion_limit() -> None:
    assert parse_json_body(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    deep = refused(b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2))
    assert deep == f"body: nested deeper than {MAX_DEPTH} levels at body[0][0][0][0]...({MAX_DEPTH + 1} levels)"
    assert refused(b'{"a":' * 70 + b"1" + b"}" * 70).startswith("body: nested deeper than 64 levels at a.a.a.a...")
    assert refused(b'[{"n": 99999999999999999999}]').startswith("body[0].n: ")
    assert "nested deeper" in refused(b"[" * 100_000 + b"]" * 100_000)


def test_a_bucket_property_must_be_named_by_a_string() -> None:
    properties = {"text": {"type": "text"}}
    with pytest.raises(SchemaError, match=r"blobs\[0\]\.property must be the name"):
        parse_blobs([{"property": {"name": "text"}, "data": "x"}], properties, 100)
    with pytest.raises(SchemaError, match=r"properties\.text\.type must be one of"):
        check_schema({"properties": {"text": {"type": {"kind": "text"}}}})
    with pytest.raises(SchemaError, match=r"properties\.text must be an object"):
        check_schema({"properties": {"text": "text"}})
    with pytest.raises(SchemaError, match="not a property name"):
        check_schema({"properties": {"$where": {"type": "text"}}})
    with pytest.raises(SchemaError, match="required must be true or false"):
        check_schema({"properties": {"text": {"type": "text", "required": "yes"}}})


@pytest.mark.parametrize(
    ("stages", "field"),
    [
        ([search_stage(searches=["mixpeek://x@1/y"])], "stages[0].config.parameters.searches[0] must be an object"),
        ([search_stage(searches=[{"feature_uri": {"uri": URI}}])], "searches[0].feature_uri must be a string"),
        ([search_stage(searches=[{"feature_uri": URI, "top_k": "ten"}])], "searches[0].top_k must be a whole"),
        ([search_stage(searches=[{"feature_uri": URI}], final_top_k=-1)], "final_top_k must be at least 1"),
        ([{"stage_id": "feature_search", "config": "x"}], "stages[0].config must be an object"),
        ([{"config": {"stage_id": {"id": 1}}}], "stages[0].config.stage_id must be a string"),
        ([{"stage_id": "filter", "parameters": {"filters": [1]}}], "filters must be an object"),
        ([{"stage_id": "filter", "parameters": {"field": {"a": 1}}}], "parameters.field must name a payload field"),
        (
            [{"stage_id": "filter", "parameters": {"filters": {"lang": {"$ne": 1}}}}],
            "filters.lang.value must be a string, number or boolean for 'eq'",
        ),
        (
            [
                {
                    "stage_id": "attribute_filter",
                    "parameters": {"filters": {"AND": [{"field": "t", "operator": "regex"}]}},
                }
            ],
            "filters.AND[0].operator 'regex' cannot run inside the vector search",
        ),
        (
            [{"stage_id": "filter", "parameters": {"filters": {"or": [{"field": "y", "operator": "between"}]}}}],
            "filters.or[0].operator must be one of",
        ),
        (
            [{"stage_id": "filter", "parameters": {"filters": {"field": "y", "operator": "in", "value": []}}}],
            "parameters.filters.value must be a non-empty list",
        ),
        ([{"stage_id": "limit", "parameters": {"limit": 1.5}}], "parameters.limit must be a whole number"),
        (["feature_search"], "stages[0] must be an object"),
    ],
)
def test_bad_stages_name_their_field(stages: list[Any], field: str) -> None:
    with pytest.raises(StageProblem) as caught:
        check_stages(stages)
    assert field in str(caught.value)


def test_placeholders_are_accepted_at_creation_and_checked_once_filled() -> None:
    stages = [search_stage(searches=[{"feature_uri": URI, "query": "{{INPUT.q}}", "top_k": "{{INPUT.k}}"}])]
    assert [where for where, _ in check_stages(stages)] == ["stages[0].config.parameters.searches[0]"]
    with pytest.raises(StageProblem, match=r"searches\[0\]\.top_k must be a whole number"):
        plan_execution(stages, None, 10)


@pytest.mark.parametrize("limit", ["ten", float("inf"), float("nan"), -1, 0, True, [5], {"n": 5}])
def test_execute_limits_that_are_not_positive_whole_numbers_are_refused(limit: Any) -> None:
    with pytest.raises(StageProblem, match=r"^limit must"):
        plan_execution([search_stage(searches=[{"feature_uri": URI}])], limit, 10)


def test_execute_limit_defaults_caps_and_follows_the_stages() -> None:
    stages = [search_stage(searches=[{"feature_uri": URI, "top_k": 7}])]
    assert plan_execution(stages, None, 10).limit == 7
    assert plan_execution(stages, 3, 10).limit == 3
    assert plan_execution(stages, 10**12, 10).limit == MAX_LIMIT
    assert plan_execution([search_stage(searches=[{"feature_uri": URI}])], None, 10).limit == 10
    limited = [*stages, {"stage_id": "limit", "parameters": {"limit": 2}}]
    assert plan_execution(limited, None, 10).limit == 2
    filtered = [*stages, {"stage_id": "filter", "parameters": {"field": "lang", "value": "en"}}]
    assert plan_execution(filtered, None, 10).filters == [{"field": "lang", "operator": "eq", "value": "en"}]


def test_filters_of_every_spelling_come_out_in_one_and_placeholders_wait_to_be_filled() -> None:
    tree = {
        "or": [
            {"field": "year", "operator": "gte", "value": "{{INPUT.since}}"},
            {"field": "pinned", "operator": "exists"},
        ]
    }
    stages = [
        search_stage(searches=[{"feature_uri": URI}]),
        {"stage_id": "attribute_filter", "parameters": {"filters": tree}},
        {"stage_id": "filter", "parameters": {"filters": {"lang": "en", "tags": ["a", "b"]}}},
        {"stage_id": "filter", "parameters": {"field": "meta.views", "operator": "gt", "value": 10}},
    ]
    check_stages(stages)  # the placeholder is accepted as is
    with pytest.raises(StageProblem, match=r"filters\.or\[0\]\.value must be a number or an ISO 8601 date-time"):
        plan_execution(stages, None, 10)  # still unfilled
    stages[1]["parameters"]["filters"]["or"][0]["value"] = 2020
    assert plan_execution(stages, None, 10).filters == [
        {
            "OR": [
                {"field": "year", "operator": "gte", "value": 2020},
                {"field": "pinned", "operator": "exists", "value": True},
            ]
        },
        {"field": "lang", "operator": "eq", "value": "en"},
        {"field": "tags", "operator": "in", "value": ["a", "b"]},
        {"field": "meta.views", "operator": "gt", "value": 10},
    ]


class _Upload(BaseModel):
    name: str
    version: str


def _guarded_app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyGuard, max_bytes=1024)

    @app.post("/uploads")
    async def upload(body: _Upload) -> dict[str, str]:
        return {"name": body.name}

    return app


def test_a_json_body_is_read_as_json_whatever_its_content_type() -> None:
    client = TestClient(_guarded_app())
    body = '{"name": "my_extractor", "version": "1.0.0"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "application/json"):  # curl -d: the first
        answer = client.post("/uploads", content=body, headers={"content-type": content_type})
        assert (answer.status_code, answer.json()) == (200, {"name": "my_extractor"}), content_type
    form = {"content-type": "application/x-www-form-urlencoded"}
    refused = client.post("/uploads", content="name=x&version=1", headers=form)
    assert refused.status_code == 422 and refused.json()["detail"].startswith("body: not valid JSON")
    assert client.post("/uploads", content="x" * 2000).status_code == 413
