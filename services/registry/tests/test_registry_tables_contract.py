"""The table port's rules, asserted identically on the in-memory twin and on MongoDB.

And on the twin read through :class:`~featurebus.registry.tables.RecentReads` (the registry's hot
tables): kept answers must never hide a write made through the same tables.

The MongoDB run uses the real local stack's SecantusDB (a MongoDB-wire server), so it is marked
``integration``. Unit tests of the use cases run on the twin; this test is why that is honest.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from featurebus.common.events import PluginManifest, Violation
from featurebus.common.model_store import ModelFile
from featurebus.registry.mongo_tables import mongo_tables
from featurebus.registry.records import ApiKey, Batch, Model, Namespace, Plugin, PluginEnablement
from featurebus.registry.tables import AnyOf, Duplicate, Tables

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", "recent", pytest.param("mongo", marks=pytest.mark.integration)])
async def tables(request: pytest.FixtureRequest) -> AsyncIterator[Tables]:
    if request.param in ("memory", "recent"):
        yield Tables.in_memory().reading_recent(60.0 if request.param == "recent" else 0.0)
        return
    uri = request.getfixturevalue("local_stack").env()["FEATUREBUS_MONGO_URI"]
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        tables = mongo_tables(client[f"fbtest_{uuid.uuid4().hex[:8]}_registry"])
        await tables.init()
        yield tables
    finally:
        await client.close()


def namespace(id: str, name: str, org: str = "org_1", at: datetime = T0) -> Namespace:
    return Namespace(id=id, org_id=org, namespace_name=name, created_at=at)


def plugin(id: str = "ns_1/toy_1_0_0", **fields: object) -> Plugin:
    base: dict[str, object] = {
        "id": id,
        "org_id": "org_1",
        "namespace_id": id.split("/")[0],
        "plugin_id": id.split("/")[1],
        "name": "toy",
        "version": "1.0.0",
        "archive_uri": "s3://fb/a.zip",
        "archive_sha256": "ab" * 32,
        "size_bytes": 10,
        "created_at": T0,
    }
    return Plugin.model_validate({**base, **fields})


async def test_a_record_round_trips_with_nested_models_and_times_in_utc_to_the_millisecond(tables: Tables) -> None:
    manifest = PluginManifest(feature_extractor_name="toy", version="1.0.0", features=[])
    stored = plugin(
        violations=[Violation(filename="a.py", line=3, code="r", message="m")],
        manifest=manifest,
        params={"k": [1, 2, {"x": None}]},
    )
    await tables.plugins.insert(stored)
    got = await tables.plugins.get(stored.id)
    assert got is not None
    assert got.violations == stored.violations and got.manifest == manifest and got.params == stored.params
    assert got.created_at == T0.replace(microsecond=123000) and got.created_at.tzinfo is not None
    assert await tables.plugins.get("ns_1/absent_1_0_0") is None


async def test_insert_refuses_a_taken_id_and_a_taken_unique_field_set(tables: Tables) -> None:
    await tables.namespaces.insert(namespace("ns_1", "docs"))
    with pytest.raises(Duplicate):
        await tables.namespaces.insert(namespace("ns_1", "other"))
    with pytest.raises(Duplicate):
        await tables.namespaces.insert(namespace("ns_2", "docs"))  # (org_id, namespace_name) is unique
    await tables.namespaces.insert(namespace("ns_3", "docs", org="org_2"))  # another org may use the name
    with pytest.raises(Duplicate):
        await tables.namespaces.save(namespace("ns_3", "docs"))  # a replace may not take it either
    assert [n.id for n in await tables.namespaces.find()] == ["ns_1", "ns_3"]


async def test_save_inserts_or_replaces_by_id(tables: Tables) -> None:
    await tables.plugins.save(plugin(status="QUEUED"))
    await tables.plugins.save(plugin(status="FAILED", error="scan failed"))
    found = await tables.plugins.find()
    assert [(p.status, p.error) for p in found] == [("FAILED", "scan failed")]


async def test_find_filters_by_equality_and_membership_and_orders_by_id(tables: Tables) -> None:
    for id, name, org in [("ns_c", "c", "org_1"), ("ns_a", "a", "org_1"), ("ns_b", "b", "org_2")]:
        await tables.namespaces.insert(namespace(id, name, org))
    assert [n.id for n in await tables.namespaces.find(org_id="org_1")] == ["ns_a", "ns_c"]
    assert [n.id for n in await tables.namespaces.find(id=AnyOf(["ns_b", "ns_c", "ns_z"]))] == ["ns_b", "ns_c"]
    assert [n.id for n in await tables.namespaces.find(org_id="org_1", id=AnyOf([]))] == []
    one = await tables.namespaces.find_one(org_id="org_2", namespace_name="b")
    assert one is not None and one.id == "ns_b"
    assert await tables.namespaces.find_one(org_id="org_2", namespace_name="a") is None


async def test_find_matches_none_and_booleans_as_values(tables: Tables) -> None:
    await tables.api_keys.insert(ApiKey(id="key_1", org_id="o", name="a", key_hash="h1", admin=True))
    await tables.api_keys.insert(ApiKey(id="key_2", org_id="o", name="b", key_hash="h2", namespaces=["ns_1"]))
    assert [k.id for k in await tables.api_keys.find(admin=True)] == ["key_1"]
    assert [k.id for k in await tables.api_keys.find(namespaces=None)] == ["key_1"]


async def test_page_orders_by_creation_then_id_and_counts_every_match(tables: Tables) -> None:
    for i, id in enumerate(["ns_e", "ns_d", "ns_c", "ns_b", "ns_a"]):
        await tables.namespaces.insert(namespace(id, id, at=T0 + timedelta(seconds=i // 2)))
    await tables.namespaces.insert(namespace("ns_x", "x", org="org_2"))
    first, total = await tables.namespaces.page(0, 3, org_id="org_1")
    rest, _ = await tables.namespaces.page(3, 10, org_id="org_1")
    assert total == 5
    assert [n.id for n in first + rest] == ["ns_d", "ns_e", "ns_b", "ns_c", "ns_a"]
    assert await tables.namespaces.page(10, 3, org_id="org_1") == ([], 5)


async def test_update_sets_fields_only_while_the_record_matches(tables: Tables) -> None:
    await tables.plugins.insert(plugin(scan_status="scanning"))
    assert await tables.plugins.update("ns_1/toy_1_0_0", {"deploy_pending": "batch_only"}, scan_status="scanning")
    assert await tables.plugins.update("ns_1/toy_1_0_0", {"scan_status": "passed"})
    assert not await tables.plugins.update("ns_1/toy_1_0_0", {"deploy_pending": None}, scan_status="scanning")
    assert not await tables.plugins.update("ns_1/absent", {"status": "FAILED"})
    got = await tables.plugins.get("ns_1/toy_1_0_0")
    assert got is not None and (got.scan_status, got.deploy_pending, got.name) == ("passed", "batch_only", "toy")


async def test_update_validates_values_and_field_names_before_writing(tables: Tables) -> None:
    await tables.plugins.insert(plugin())
    with pytest.raises(ValidationError):
        await tables.plugins.update("ns_1/toy_1_0_0", {"status": "OK", "size_bytes": "many"})
    with pytest.raises(ValueError, match="not a field"):
        await tables.plugins.update("ns_1/toy_1_0_0", {"stauts": "OK"})
    got = await tables.plugins.get("ns_1/toy_1_0_0")
    assert got is not None and got.status == "QUEUED"  # nothing of the refused updates was written
    violation = Violation(filename="a.py", code="r", message="m")
    assert await tables.plugins.update("ns_1/toy_1_0_0", {"violations": [violation], "updated_at": T0})
    got = await tables.plugins.get("ns_1/toy_1_0_0")
    assert got is not None and got.violations == [violation] and got.updated_at == T0.replace(microsecond=123000)


async def test_increment_adds_to_a_counter(tables: Tables) -> None:
    batch = Batch(id="btch_1", org_id="o", namespace_id="n", bucket_id="b", collection_ids=["c"], task_id="t")
    await tables.batches.insert(batch)
    await tables.batches.increment("btch_1", "frames_done", 2)
    await tables.batches.increment("btch_1", "frames_done", 3)
    got = await tables.batches.get("btch_1")
    assert got is not None and got.frames_done == 5
    assert [b.id for b in await tables.batches.find(task_id="t")] == ["btch_1"]


async def test_delete_removes_one_record_and_says_whether_there_was_one(tables: Tables) -> None:
    await tables.namespaces.insert(namespace("ns_1", "a"))
    await tables.namespaces.insert(namespace("ns_2", "b"))
    assert await tables.namespaces.delete("ns_1")
    assert not await tables.namespaces.delete("ns_1")
    assert [n.id for n in await tables.namespaces.find()] == ["ns_2"]
    await tables.namespaces.insert(namespace("ns_3", "a"))  # its unique name is free again


async def test_insert_many_stores_records_in_order_and_refuses_a_taken_id_after_the_ones_before(
    tables: Tables,
) -> None:
    await tables.namespaces.insert_many([namespace("ns_1", "a"), namespace("ns_2", "b")])
    await tables.namespaces.insert_many([])
    assert [n.id for n in await tables.namespaces.find()] == ["ns_1", "ns_2"]
    with pytest.raises(Duplicate):
        await tables.namespaces.insert_many([namespace("ns_3", "c"), namespace("ns_1", "d"), namespace("ns_4", "e")])
    assert [n.id for n in await tables.namespaces.find()] == ["ns_1", "ns_2", "ns_3"]
    with pytest.raises(Duplicate):
        await tables.namespaces.insert_many([namespace("ns_5", "a")])  # a taken unique name


async def test_delete_many_removes_the_records_named_in_one_call_and_counts_them(tables: Tables) -> None:
    for i in range(4):
        await tables.namespaces.insert(namespace(f"ns_{i}", f"n{i}"))
    await tables.namespaces.get("ns_1")  # a kept answer (RecentReads) must not outlive the delete
    assert await tables.namespaces.delete_many(["ns_1", "ns_2", "ns_9", "ns_1"]) == 2
    assert await tables.namespaces.delete_many([]) == 0
    assert await tables.namespaces.get("ns_1") is None
    assert [n.id for n in await tables.namespaces.find()] == ["ns_0", "ns_3"]


async def test_plugin_enablements_round_trip_and_are_found_by_org_plugin_and_state(tables: Tables) -> None:
    """An organization plugin (its scope is the org) and the namespaces that enabled it."""
    await tables.plugins.insert(plugin("org_1/toy_1_0_0"))
    org_plugin = await tables.plugins.get("org_1/toy_1_0_0")
    assert org_plugin is not None and org_plugin.organization_wide and not plugin().organization_wide
    for ns, enabled in [("ns_1", True), ("ns_2", False)]:
        await tables.plugin_enablements.save(
            PluginEnablement(
                id=f"{ns}/toy_1_0_0",
                org_id="org_1",
                namespace_id=ns,
                plugin_id="toy_1_0_0",
                enabled=enabled,
                params={"k": [1, {"x": None}]},
                created_at=T0,
            )
        )
    found = await tables.plugin_enablements.find(org_id="org_1", plugin_id="toy_1_0_0", enabled=True, deploy=True)
    assert [(e.namespace_id, e.params, e.created_at) for e in found] == [
        ("ns_1", {"k": [1, {"x": None}]}, T0.replace(microsecond=123000))
    ]
    assert [e.id for e in await tables.plugin_enablements.find(namespace_id="ns_2")] == ["ns_2/toy_1_0_0"]


async def test_models_round_trip_their_files_and_are_found_by_scope_name_and_status(tables: Tables) -> None:
    """A cluster model (no namespace) and a namespace model; a confirm's compare-and-set on status."""
    files = [
        ModelFile(path="config.json", sha256="ab" * 32, size_bytes=3),
        ModelFile(path="m.onnx", sha256="cd" * 32, size_bytes=0),
    ]
    for id, ns in [("mdl_1", None), ("mdl_2", "ns_1")]:
        await tables.models.insert(
            Model(
                id=id,
                org_id="org_1",
                namespace_id=ns,
                name="acme/x",
                revision="r",
                files=files,
                uploads=[1],
                expires_at=T0,
                created_at=T0,
            )
        )
    got = await tables.models.get("mdl_1")
    assert got is not None and (got.files, got.uploads, got.namespace_id, got.expires_at) == (
        files,
        [1],
        None,
        T0.replace(microsecond=123000),
    )
    assert [m.id for m in await tables.models.find(namespace_id=None)] == ["mdl_1"]
    assert [m.id for m in await tables.models.find(namespace_id="ns_1", name="acme/x", status="pending")] == ["mdl_2"]
    assert await tables.models.update("mdl_1", {"status": "ready", "ready_at": T0}, status="pending")
    assert not await tables.models.update("mdl_1", {"status": "ready", "ready_at": T0}, status="pending")
    assert [m.id for m in await tables.models.find(name="acme/x", status="ready")] == ["mdl_1"]
    assert await tables.models.page(0, 10, namespace_id=None) == ([await tables.models.get("mdl_1")], 1)
