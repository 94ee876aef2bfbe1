"""Collections on the twins: what creating one checks (and the hint of each refusal), what it tells
the indexer, lookups by id or name, deletion, and that another namespace's key sees none of it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from registry_collection_samples import bucket, plugin
from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.common.events import CollectionLifecycle
from featurebus.registry.errors import Conflict, DomainError, Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON
from featurebus.registry.records import Collection, Namespace, Retriever
from featurebus.registry.routes.collections import CollectionView
from featurebus.registry.usecases import collections
from featurebus.registry.usecases.collections import Extractor

TEXT = Extractor("text_embed", "1.0.0", {"model": "small"})


BKT = "bkt_docs_articles"


async def docs() -> tuple[Twins, Namespace]:
    """Namespace docs with bucket articles and a ready plugin text_embed."""
    t = twins()
    ns = await t.namespace("docs")
    await bucket(t, ns)
    await plugin(t, ns)
    return t, ns


async def test_a_collection_indexes_each_feature_of_its_extractors_and_tells_the_indexer() -> None:
    t, ns = await docs()
    await plugin(t, ns, "clip", features=("image", "caption"))
    col = await collections.create_collection(
        t.c, ADMIN, "docs", "articles", [TEXT, Extractor("clip", "v1")], bucket_ids=[BKT]
    )
    assert [(v.name, v.plugin_id, v.dimensions) for v in col.vector_indexes] == [
        ("embedding", "text_embed_1_0_0", 4),
        ("image", "clip_1_0_0", 4),
        ("caption", "clip_1_0_0", 4),
    ]
    assert col.vector_indexes[0].feature_uri == "mixpeek://text_embed@1.0.0/embedding"
    assert col.feature_extractors[0] == {
        "feature_extractor_name": "text_embed",
        "version": "1.0.0",
        "parameters": {"model": "small"},
        "plugin_id": "text_embed_1_0_0",
    }
    stored = await t.tables.collections.get(col.id)
    assert stored is not None and stored.vector_indexes == col.vector_indexes
    [(event, key)] = t.bus.published
    assert isinstance(event, CollectionLifecycle) and key == col.id
    assert (event.action, event.namespace_id, event.collection_id) == ("created", "ns_docs", col.id)
    assert event.vector_indexes == col.vector_indexes


def refusal(**changes: Any) -> dict[str, Any]:
    return {"name": "c", "extractors": [TEXT], "source_type": "bucket", "bucket_ids": [BKT]} | changes


@pytest.mark.parametrize(
    ("request_", "kind", "detail", "hint"),
    [
        (
            refusal(source_type="url"),
            Invalid,
            "source.type 'url' is not supported",
            'use {"type": "bucket", "bucket_ids": [...]}',
        ),
        (refusal(bucket_ids=["bkt_nope"]), Invalid, "source.bucket_ids: bucket 'bkt_nope' not found", None),
        (
            refusal(extractors=[Extractor("text_embed", "1.0.0", {"x": "y" * MAX_STORED_JSON})]),
            Invalid,
            f"feature_extractors[0].parameters are over {MAX_STORED_JSON} bytes as JSON",
            None,
        ),
        (refusal(extractors=[Extractor("text_embed", "one")]), Invalid, "feature_extractors[0].version: ", None),
        (
            refusal(extractors=[TEXT, Extractor("absent", "1.0.0")]),
            Invalid,
            "feature_extractors[1]: plugin absent_1_0_0 is not uploaded to this namespace",
            "upload it with POST .../plugins/uploads",
        ),
        (
            refusal(extractors=[TEXT, TEXT]),
            Invalid,
            "two feature extractors both produce the vector 'embedding'",
            "use extractors with distinct feature names in one collection",
        ),
    ],
)
async def test_each_refusal_names_the_field_and_the_fix(
    request_: dict[str, Any], kind: type[DomainError], detail: str, hint: str | None
) -> None:
    t, _ = await docs()
    with pytest.raises(kind) as refused:
        await collections.create_collection(
            t.c,
            ADMIN,
            "docs",
            request_["name"],
            request_["extractors"],
            source_type=request_["source_type"],
            bucket_ids=request_["bucket_ids"],
        )
    assert type(refused.value) is kind and refused.value.detail.startswith(detail)
    assert refused.value.hint == hint
    assert await t.tables.collections.find() == [] and t.bus.published == []


@pytest.mark.parametrize(
    ("state", "detail", "hint"),
    [
        (
            {"scan_status": "scanning"},
            "feature_extractors[0]: plugin text_embed_1_0_0 has not passed its scan (scanning)",
            "check GET .../plugins/text_embed_1_0_0/status",
        ),
        (
            {"scan_status": "failed"},
            "feature_extractors[0]: plugin text_embed_1_0_0 has not passed its scan (failed)",
            "check GET .../plugins/text_embed_1_0_0/status",
        ),
        (
            {"batch_enabled": False},
            "feature_extractors[0]: plugin text_embed_1_0_0 is not deployed for batch processing",
            "POST .../plugins/text_embed_1_0_0/deploy?deployment_type=batch_only",
        ),
    ],
)
async def test_a_plugin_not_ready_for_batches_is_a_conflict(state: dict[str, Any], detail: str, hint: str) -> None:
    t, ns = await docs()
    await plugin(t, ns, **state)
    with pytest.raises(Conflict) as refused:
        await collections.create_collection(t.c, ADMIN, "docs", "c", [TEXT], bucket_ids=[BKT])
    assert (refused.value.detail, refused.value.hint) == (detail, hint)


async def test_a_plugin_without_features_would_index_nothing() -> None:
    t, ns = await docs()
    await plugin(t, ns, features=())
    with pytest.raises(Invalid, match="declares no features: the collection would index 0 documents") as refused:
        await collections.create_collection(t.c, ADMIN, "docs", "c", [TEXT], bucket_ids=[BKT])
    assert refused.value.hint and "feature_name" in refused.value.hint


async def test_a_collection_is_found_by_id_or_name_listed_in_order_and_deleted() -> None:
    t, _ = await docs()
    first = await collections.create_collection(t.c, ADMIN, "docs", "first", [TEXT], bucket_ids=[BKT])
    await asyncio.sleep(0.002)  # listed by creation time (stored to the millisecond), then id
    second = await collections.create_collection(t.c, ADMIN, "ns_docs", "second", [TEXT], bucket_ids=[BKT])
    assert (await collections.get_collection(t.c, ADMIN, "docs", "second")).id == second.id
    assert (await collections.get_collection(t.c, ADMIN, "docs", first.id)).id == first.id
    listed, total = await collections.list_collections(t.c, ADMIN, "docs", 0, 10)
    assert ([c.id for c in listed], total) == ([first.id, second.id], 2)
    listed, total = await collections.list_collections(t.c, ADMIN, "docs", 1, 10)
    assert ([c.id for c in listed], total) == ([second.id], 2)
    assert (await collections.delete_collection(t.c, ADMIN, "docs", "first")).id == first.id
    deleted = t.bus.events(CollectionLifecycle)[-1]
    assert (deleted.action, deleted.collection_id, deleted.vector_indexes) == ("deleted", first.id, [])
    with pytest.raises(NotFound, match="collection 'first' not found in namespace 'docs'"):
        await collections.get_collection(t.c, ADMIN, "docs", "first")


async def test_a_collection_a_retriever_searches_is_not_deleted() -> None:
    t, _ = await docs()
    col = await collections.create_collection(t.c, ADMIN, "docs", "c", [TEXT], bucket_ids=[BKT])
    await t.tables.retrievers.insert(
        Retriever(
            id="ret_1",
            org_id=ADMIN.org_id,
            namespace_id="ns_docs",
            retriever_name="r",
            collection_ids=[col.id],
            stages=[],
        )
    )
    with pytest.raises(Conflict, match=rf"collection {col.id} is used by retrievers \['ret_1'\]") as refused:
        await collections.delete_collection(t.c, ADMIN, "docs", col.id)
    assert refused.value.hint == "delete those retrievers first"
    assert await t.tables.collections.get(col.id) is not None and len(t.bus.published) == 1


async def test_another_namespace_sees_none_of_it() -> None:
    t, _ = await docs()
    other = await t.namespace("other")
    await bucket(t, other)
    col = await collections.create_collection(t.c, ADMIN, "docs", "mine", [TEXT], bucket_ids=[BKT])
    outsider = limited_to(other.id)
    for attempt in (
        collections.get_collection(t.c, outsider, "docs", col.id),
        collections.delete_collection(t.c, outsider, "docs", "mine"),
        collections.list_collections(t.c, outsider, "docs", 0, 10),
        collections.create_collection(t.c, outsider, "docs", "theirs", [TEXT], bucket_ids=[BKT]),
    ):
        with pytest.raises(NotFound, match="namespace 'docs' not found"):
            await attempt
    # Through its own namespace: neither docs' collection nor docs' bucket or plugin.
    with pytest.raises(NotFound, match=f"collection {col.id!r} not found in namespace 'other'"):
        await collections.get_collection(t.c, outsider, "other", col.id)
    with pytest.raises(Invalid, match=r"source\.bucket_ids: bucket 'bkt_docs_articles' not found"):
        await collections.create_collection(t.c, outsider, "other", "theirs", [TEXT], bucket_ids=[BKT])
    with pytest.raises(Invalid, match="plugin text_embed_1_0_0 is not uploaded to this namespace"):
        await collections.create_collection(t.c, outsider, "other", "theirs", [TEXT], bucket_ids=["bkt_other_articles"])
    assert await collections.list_collections(t.c, outsider, "other", 0, 10) == ([], 0)


def test_the_answer_keeps_the_guides_field_names() -> None:
    col = Collection(
        id="col_1",
        org_id="o",
        namespace_id="ns",
        collection_name="c",
        feature_extractors=[],
        bucket_ids=["bkt"],
        vector_indexes=[],
    )
    view = CollectionView.of(col).model_dump(mode="json")
    assert list(view) == [
        "collection_id",
        "collection_name",
        "name",
        "namespace_id",
        "feature_extractors",
        "source",
        "vector_indexes",
        "created_at",
    ]
    assert view["source"] == {"type": "bucket", "bucket_ids": ["bkt"]} and view["name"] == "c"
