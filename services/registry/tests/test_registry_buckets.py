"""Buckets on the twins: a schema refused names its field, listings stay in their namespace, and a key
of another namespace finds none of it."""

from __future__ import annotations

from typing import Any

import pytest
from registry_twins import ADMIN, MEMBER, limited_to, twins

from featurebus.registry.errors import Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON
from featurebus.registry.routes.buckets import BucketView, CreateBucket
from featurebus.registry.usecases import buckets

TEXT: dict[str, Any] = {"properties": {"text": {"type": "text", "required": True}}}


async def test_a_bucket_is_created_listed_and_read_by_id_in_its_namespace() -> None:
    t = twins()
    ns = await t.namespace("docs")
    await t.namespace("other")
    made = await buckets.create_bucket(t.c, MEMBER, "docs", "articles", TEXT)
    assert made.id.startswith("bkt_") and (made.namespace_id, made.org_id, made.object_count) == (ns.id, "org_1", 0)
    stored = await t.tables.buckets.get(made.id)
    assert stored is not None and (stored.bucket_name, stored.bucket_schema) == ("articles", TEXT)
    await buckets.create_bucket(t.c, MEMBER, "other", "elsewhere", TEXT)
    second = await buckets.create_bucket(t.c, MEMBER, ns.id, "notes", TEXT)  # by id or by name

    first, total = await buckets.list_buckets(t.c, MEMBER, "docs", 0, 1)
    rest, _ = await buckets.list_buckets(t.c, MEMBER, "docs", 1, 10)
    assert total == 2 and len(first) == 1 and {b.id for b in first + rest} == {made.id, second.id}
    assert (await buckets.get_bucket(t.c, MEMBER, "docs", made.id)).bucket_name == "articles"
    view = BucketView.of(made).model_dump()
    assert view == {
        "bucket_id": made.id,
        "bucket_name": "articles",
        "name": "articles",
        "bucket_schema": TEXT,
        "namespace_id": ns.id,
        "object_count": 0,
        "created_at": made.created_at,
    }


def test_the_request_takes_name_for_bucket_name() -> None:
    body = CreateBucket.model_validate({"name": "articles", "bucket_schema": TEXT, "extra": 1})
    assert (body.bucket_name, body.bucket_schema) == ("articles", TEXT)


@pytest.mark.parametrize(
    ("schema", "detail", "hint"),
    [
        ({}, 'bucket_schema.properties must map property names to {"type": ...}', '"required": true'),
        ({"properties": []}, "bucket_schema.properties must map", "bucket_schema"),
        ({"properties": {"x y": {"type": "text"}}}, "bucket_schema.properties: 'x y' is not a property name", "_"),
        ({"properties": {"photo": "image"}}, "bucket_schema.properties.photo must be an object like", None),
        ({"properties": {"photo": {"type": "picture"}}}, "bucket_schema.properties.photo.type must be one of", None),
        (
            {"properties": {"photo": {"type": "image", "required": "yes"}}},
            "bucket_schema.properties.photo.required must be true or false",
            None,
        ),
        (
            {"properties": {"text": {"type": "text", "doc": "x" * MAX_STORED_JSON}}},
            f"bucket_schema is over {MAX_STORED_JSON} bytes as JSON",
            "keep to properties and types",
        ),
    ],
)
async def test_a_bad_schema_is_refused_naming_the_field(schema: dict[str, Any], detail: str, hint: str | None) -> None:
    t = twins()
    await t.namespace("docs")
    with pytest.raises(Invalid) as refused:
        await buckets.create_bucket(t.c, ADMIN, "docs", "b", schema)
    assert refused.value.detail.startswith(detail), refused.value.detail
    if hint is not None:
        assert refused.value.hint is not None and hint in refused.value.hint
    assert await t.tables.buckets.find() == []


async def test_a_key_limited_to_another_namespace_finds_neither_the_namespace_nor_its_buckets() -> None:
    t = twins()
    await t.namespace("docs")
    other = await t.namespace("other")
    made = await buckets.create_bucket(t.c, ADMIN, "docs", "articles", TEXT)
    stranger = limited_to(other.id)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await buckets.create_bucket(t.c, stranger, "docs", "mine", TEXT)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await buckets.list_buckets(t.c, stranger, "docs", 0, 10)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await buckets.get_bucket(t.c, stranger, "docs", made.id)
    # and through its own namespace, another namespace's bucket does not exist
    with pytest.raises(NotFound, match=f"bucket {made.id!r} not found in namespace 'other'"):
        await buckets.get_bucket(t.c, stranger, "other", made.id)
    assert (await buckets.list_buckets(t.c, stranger, "other", 0, 10)) == ([], 0)
