"""Organization plugins on the twins: uploaded by admins and scanned like namespace plugins, enabled
per namespace with params (the plugin's defaults there), and enable/disable with effect for both
kinds of plugin: a disabled plugin refuses collections and batches, naming the call that enables it."""

from __future__ import annotations

from typing import Any

import pytest
from registry_collection_samples import bucket, plugin
from registry_twins import ADMIN, MEMBER, ORG, Twins, limited_to, twins

from featurebus.common.events import BatchTriggered, FeatureSpec, PluginManifest, PluginScanned, PluginUploaded
from featurebus.registry.errors import Conflict, Forbidden, Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON
from featurebus.registry.plugin_resolution import resolve_plugin
from featurebus.registry.records import Collection, Plugin, Retriever
from featurebus.registry.usecases import batches, collections, org_plugins, plugins, retrievers
from featurebus.registry.usecases.collections import Extractor

ARCHIVE = b"PK\x03\x04 org text_embed 1.0.0"
PLUGIN_ID = "text_embed_1_0_0"
BKT = "bkt_docs_articles"
TEXT = Extractor("text_embed", "1.0.0", {"model": "large"})
ENABLE = f"enable it with POST .../plugins/org/{PLUGIN_ID}/enable"


async def org_plugin(t: Twins, *, scan: bool | None = True) -> Plugin:
    """text_embed 1.0.0 uploaded to the organization; its scan passed (True), failed (False) or runs (None)."""
    upload, url = await org_plugins.create_org_plugin_upload(t.c, ADMIN, "text_embed", "1.0.0")
    t.store.put_presigned(url, ARCHIVE)
    confirmed = (await org_plugins.confirm_org_plugin_upload(t.c, ADMIN, upload.id)).plugin
    if scan is not None:
        await plugins.apply_scan(t.c, verdict(confirmed, scan))
    return (await org_plugins.get_org_plugin(t.c, ADMIN, PLUGIN_ID)).plugin


def verdict(p: Plugin, passed: bool) -> PluginScanned:
    manifest = PluginManifest(
        feature_extractor_name="text_embed",
        version="1.0.0",
        features=[FeatureSpec(feature_name="embedding", embedding_dim=4)],
    )
    return PluginScanned(
        org_id=p.org_id,
        namespace_id=p.namespace_id,
        plugin_id=p.plugin_id,
        archive_sha256=p.archive_sha256,
        passed=passed,
        manifest=manifest if passed else None,
    )


async def docs(**scan: Any) -> Twins:
    """Namespace docs with bucket articles and the organization plugin text_embed (not enabled yet)."""
    t = twins()
    ns = await t.namespace("docs")
    await bucket(t, ns)
    await org_plugin(t, **scan)
    return t


async def collection(t: Twins, ns: str = "docs", name: str = "articles") -> Collection:
    return await collections.create_collection(t.c, ADMIN, ns, name, [TEXT], bucket_ids=[f"bkt_{ns}_articles"])


async def retriever(t: Twins, col: Collection) -> Retriever:
    search = {"feature_uri": "mixpeek://text_embed@1.0.0/embedding", "query": "{{INPUT.query}}"}
    stages = [{"stage_type": "filter", "config": {"stage_id": "feature_search", "parameters": {"searches": [search]}}}]
    return await retrievers.create_retriever(t.c, ADMIN, "docs", "search", [col.id], stages)


async def test_an_org_plugin_is_uploaded_by_admin_keys_and_scanned_like_a_namespace_plugin() -> None:
    t = twins()
    docs_ns = await t.namespace("docs")
    upload, url = await org_plugins.create_org_plugin_upload(t.c, ADMIN, "text_embed", "v1")
    assert (upload.namespace_id, upload.org_id, upload.plugin_id) == (ORG, ORG, PLUGIN_ID)
    t.store.put_presigned(url, ARCHIVE)
    confirmed = await org_plugins.confirm_org_plugin_upload(t.c, ADMIN, upload.id)
    p = confirmed.plugin
    assert (p.id, p.organization_wide, p.scan_status, confirmed.deployed) == (
        f"{ORG}/{PLUGIN_ID}",
        True,
        "scanning",
        False,
    )
    [(event, key)] = t.bus.published
    assert isinstance(event, PluginUploaded) and key == PLUGIN_ID
    assert (event.namespace_id, event.org_id, event.archive_sha256) == (ORG, ORG, p.archive_sha256)
    # the scanner's verdict lands through the namespace plugins' apply_scan, unchanged
    await plugins.apply_scan(t.c, verdict(p, passed=True))
    scanned = (await org_plugins.get_org_plugin(t.c, limited_to(docs_ns.id), PLUGIN_ID)).plugin
    assert (scanned.scan_status, scanned.status, scanned.manifest is not None) == ("passed", "NOT_DEPLOYED", True)
    listed, total = await org_plugins.list_org_plugins(t.c, MEMBER, 0, 10)
    assert total == 1 and [o.plugin.plugin_id for o in listed] == [PLUGIN_ID]
    # not a plugin of any namespace, and a namespace's upload is not the organization's
    assert await plugins.list_plugins(t.c, ADMIN, "docs", 0, 10) == ([], 0)
    with pytest.raises(NotFound, match="namespace 'org_1' not found"):
        await plugins.get_plugin(t.c, ADMIN, ORG, PLUGIN_ID)
    ns_upload, _ = await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", "2.0.0")
    with pytest.raises(NotFound, match=r"upload .* not found"):
        await org_plugins.confirm_org_plugin_upload(t.c, ADMIN, ns_upload.id)
    with pytest.raises(NotFound, match=r"upload .* not found"):
        await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", upload.id)


@pytest.mark.parametrize("who", [MEMBER, limited_to("ns_docs")])
async def test_only_org_admin_keys_upload_confirm_and_delete_org_plugins(who: Any) -> None:
    t = await docs()
    attempts = [
        org_plugins.create_org_plugin_upload(t.c, who, "other", "1.0.0"),
        org_plugins.confirm_org_plugin_upload(t.c, who, "upl_any"),
        org_plugins.delete_org_plugin(t.c, who, PLUGIN_ID),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden, match="needs an org-admin key") as refused:
            await attempt
        assert refused.value.hint == "organization plugins are uploaded and deleted with an org-admin key"
    assert (await org_plugins.get_org_plugin(t.c, who, PLUGIN_ID)).plugin.plugin_id == PLUGIN_ID


async def test_enabled_in_a_namespace_its_params_are_the_defaults_that_collection_parameters_override() -> None:
    t = await docs()
    found = await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, {"model": "small", "batch": 8})
    assert (found.namespace.id, found.plugin.enabled, found.plugin.params) == (
        "ns_docs",
        True,
        {"model": "small", "batch": 8},
    )
    assert (found.plugin.batch_enabled, found.plugin.organization_wide) == (True, True)
    col = await collection(t)
    assert [v.feature_uri for v in col.vector_indexes] == ["mixpeek://text_embed@1.0.0/embedding"]
    await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    [event] = t.bus.events(BatchTriggered)
    [ref] = event.collections[0].feature_extractors
    org_record = (await org_plugins.get_org_plugin(t.c, ADMIN, PLUGIN_ID)).plugin
    assert (ref.plugin_id, ref.archive_uri, ref.archive_sha256) == (
        PLUGIN_ID,
        org_record.archive_uri,
        org_record.archive_sha256,
    )
    assert ref.parameters == {"model": "large", "batch": 8}
    # a retriever of the namespace names the plugin's feature like a namespace plugin's
    assert (await retriever(t, col)).collection_ids == [col.id]
    # the organization's record is untouched: the params belong to the namespace
    assert (org_record.params, (await org_plugins.get_org_plugin(t.c, ADMIN, PLUGIN_ID)).deployed) == ({}, True)


async def test_an_org_plugin_not_enabled_in_a_namespace_is_refused_there_naming_the_fix() -> None:
    t = await docs()
    other = await t.namespace("other")
    await bucket(t, other)
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True)
    await collection(t)
    with pytest.raises(Conflict) as refused:
        await collection(t, "other")
    assert refused.value.detail == (
        f"feature_extractors[0]: plugin {PLUGIN_ID} is an organization plugin not enabled in this namespace"
    )
    assert refused.value.hint == ENABLE


@pytest.mark.parametrize("kind", ["organization", "namespace"])
async def test_a_disabled_plugin_refuses_new_collections_and_batches_until_enabled_again(kind: str) -> None:
    t = twins()
    ns = await t.namespace("docs")
    await bucket(t, ns)
    if kind == "organization":
        await org_plugin(t)
        await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, {"k": 1})
    else:
        await plugin(t, ns, params={"k": 1})
    col = await collection(t)
    search = await retriever(t, col)
    disabled = await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, False)
    assert (disabled.plugin.enabled, disabled.plugin.params) == (False, {"k": 1})
    assert disabled.plugin.organization_wide is (kind == "organization")
    with pytest.raises(Conflict) as no_collection:
        await collection(t, name="second")
    state = "an organization plugin not enabled" if kind == "organization" else "disabled"
    assert no_collection.value.detail == f"feature_extractors[0]: plugin {PLUGIN_ID} is {state} in this namespace"
    assert no_collection.value.hint == ENABLE
    with pytest.raises(Conflict) as no_batch:
        await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert PLUGIN_ID in no_batch.value.detail and no_batch.value.hint == ENABLE
    assert t.bus.events(BatchTriggered) == []
    with pytest.raises(Conflict) as no_query:  # refused before anything is embedded or searched
        await retrievers.execute_retriever(t.c, ADMIN, "docs", search.id, {"query": "cats"}, None)
    assert PLUGIN_ID in no_query.value.detail and no_query.value.hint == ENABLE
    enabled = await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True)  # no params: they stay
    assert (enabled.plugin.enabled, enabled.plugin.params) == (True, {"k": 1})
    await batches.trigger_batch(t.c, ADMIN, "docs", BKT, [col.id])
    assert t.bus.events(BatchTriggered)[0].collections[0].feature_extractors[0].parameters == {"k": 1, "model": "large"}


async def test_enable_refuses_a_failed_scan_and_oversized_params_and_deploy_false_is_not_deployed() -> None:
    t = await docs(scan=False)
    with pytest.raises(Conflict, match=f"organization plugin {PLUGIN_ID} failed its scan and cannot be enabled"):
        await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True)
    with pytest.raises(Invalid, match=f"params are over {MAX_STORED_JSON} bytes as JSON") as big:
        await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, {"x": "y" * MAX_STORED_JSON})
    assert big.value.hint == "pass large inputs as blobs"
    assert (await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, False)).plugin.enabled is False
    assert await t.tables.plugin_enablements.find() == []  # never enabled: disabling stores nothing

    t = await docs()
    skipped = await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, deploy=False)
    assert (skipped.plugin.enabled, skipped.plugin.batch_enabled) == (True, False)
    with pytest.raises(Conflict) as refused:
        await collection(t)
    assert refused.value.detail == f"feature_extractors[0]: plugin {PLUGIN_ID} is not deployed for batch processing"
    assert refused.value.hint == f'{ENABLE} and {{"deploy": true}}'


async def test_an_org_plugin_enabled_during_its_scan_is_usable_once_the_scan_passes() -> None:
    t = await docs(scan=None)
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True)
    with pytest.raises(Conflict) as refused:
        await collection(t)
    assert refused.value.detail == f"feature_extractors[0]: plugin {PLUGIN_ID} has not passed its scan (scanning)"
    assert refused.value.hint == f"check GET /v1/plugins/{PLUGIN_ID}"
    await plugins.apply_scan(t.c, verdict((await org_plugins.get_org_plugin(t.c, ADMIN, PLUGIN_ID)).plugin, True))
    assert (await collection(t)).feature_extractors[0]["plugin_id"] == PLUGIN_ID


async def test_available_lists_every_org_plugin_with_its_state_and_params_in_this_namespace() -> None:
    t = await docs()
    other = await t.namespace("other")
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, {"k": "docs"})
    namespace, [here] = await org_plugins.available_plugins(t.c, ADMIN, "docs")
    assert (namespace.id, here.plugin.plugin_id, here.plugin.enabled, here.plugin.params, here.shadowed) == (
        "ns_docs",
        PLUGIN_ID,
        True,
        {"k": "docs"},
        False,
    )
    _, [there] = await org_plugins.available_plugins(t.c, limited_to(other.id), "other")
    assert (there.plugin.enabled, there.plugin.params) == (False, {})  # docs' params stay docs'
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await org_plugins.available_plugins(t.c, limited_to(other.id), "docs")
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await org_plugins.set_enabled(t.c, limited_to(other.id), "docs", PLUGIN_ID, False)
    # deployed only where the key may look
    assert (await org_plugins.get_org_plugin(t.c, limited_to(other.id), PLUGIN_ID)).deployed is False
    assert (await org_plugins.get_org_plugin(t.c, limited_to("ns_docs"), PLUGIN_ID)).deployed is True


async def test_a_namespace_plugin_of_the_same_id_comes_first_in_use_and_in_enable() -> None:
    t = await docs()
    ns = await t.tables.namespaces.get("ns_docs")
    assert ns is not None
    await plugin(t, ns, params={"own": True})
    resolved = await resolve_plugin(t.tables, ns, PLUGIN_ID)
    assert resolved is not None and (resolved.id, resolved.params) == (f"ns_docs/{PLUGIN_ID}", {"own": True})
    found = await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True, {"k": 2})
    assert (found.plugin.organization_wide, found.plugin.params) == (False, {"k": 2})
    assert await t.tables.plugin_enablements.find() == []
    _, [item] = await org_plugins.available_plugins(t.c, ADMIN, "docs")
    assert item.shadowed is True
    with pytest.raises(NotFound, match="plugin 'absent_1_0_0' not found in namespace 'docs' nor in the organization"):
        await org_plugins.set_enabled(t.c, ADMIN, "docs", "absent_1_0_0", True)


async def test_an_org_plugin_is_not_deleted_while_enabled_or_used_and_deletion_forgets_its_enablements() -> None:
    t = await docs()
    other = await t.namespace("other")
    await bucket(t, other)
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, True)
    await org_plugins.set_enabled(t.c, ADMIN, "other", PLUGIN_ID, True)
    col = await collection(t)
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN_ID, False)
    with pytest.raises(Conflict) as refused:
        await org_plugins.delete_org_plugin(t.c, ADMIN, PLUGIN_ID)
    assert refused.value.detail == (
        f"organization plugin {PLUGIN_ID} is enabled in namespaces ['other'] and used by collections ['{col.id}']"
    )
    assert refused.value.hint is not None and f"/plugins/org/{PLUGIN_ID}/disable" in refused.value.hint
    await org_plugins.set_enabled(t.c, ADMIN, "other", PLUGIN_ID, False)
    await collections.delete_collection(t.c, ADMIN, "docs", col.id)
    deleted = await org_plugins.delete_org_plugin(t.c, ADMIN, PLUGIN_ID)
    assert deleted.plugin_id == PLUGIN_ID and await t.tables.plugin_enablements.find() == []
    with pytest.raises(NotFound, match=f"organization plugin '{PLUGIN_ID}' not found"):
        await org_plugins.get_org_plugin(t.c, ADMIN, PLUGIN_ID)


async def test_a_collection_of_a_namespace_plugin_with_the_same_id_does_not_hold_the_org_plugin() -> None:
    t = await docs()
    ns = await t.tables.namespaces.get("ns_docs")
    assert ns is not None
    await plugin(t, ns)
    await collection(t)  # uses the namespace's own text_embed
    assert (await org_plugins.delete_org_plugin(t.c, ADMIN, PLUGIN_ID)).organization_wide
