"""Plugins on the twins: upload → confirm → scan verdict, deploys that meet the scan, delete
(enable and disable: test_registry_org_plugins.py)."""

from __future__ import annotations

import pytest
from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.common.events import DeployRequested, PluginManifest, PluginScanned, PluginUploaded, Violation
from featurebus.common.objectstore import sha256_hex
from featurebus.registry.errors import Conflict, DomainError, Invalid, NotFound, TooLarge
from featurebus.registry.records import Collection, Plugin
from featurebus.registry.usecases import deployments, plugins

ARCHIVE = b"PK\x03\x04 text_embed 1.0.0"
PLUGIN_ID = "text_embed_1_0_0"
BAD = Violation(filename="pipeline.py", line=3, code="FB100", message="imports subprocess")


async def uploaded(t: Twins, archive: bytes | None = ARCHIVE, version: str = "v1") -> str:
    """An upload of text_embed ``version`` whose archive was PUT (unless None); its upload_id."""
    upload, url = await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", version)
    if archive is not None:
        t.store.put_presigned(url, archive)
    return upload.id


async def confirmed(t: Twins, archive: bytes = ARCHIVE) -> Plugin:
    return await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", await uploaded(t, archive))


def verdict(plugin: Plugin, passed: bool, sha: str | None = None) -> PluginScanned:
    return PluginScanned(
        org_id=plugin.org_id,
        namespace_id=plugin.namespace_id,
        plugin_id=plugin.plugin_id,
        archive_sha256=sha or plugin.archive_sha256,
        passed=passed,
        violations=[] if passed else [BAD],
        manifest=PluginManifest(feature_extractor_name="text_embed", version="1.0.0") if passed else None,
    )


async def scan(t: Twins, event: PluginScanned) -> None:
    """The verdict as the registry's handler applies it: stored, then a deploy asked for meanwhile carried out."""
    scanned = await plugins.apply_scan(t.c, event)
    if scanned is not None:
        await deployments.carry_out_pending(t.c, scanned)


async def stored(t: Twins, plugin: Plugin) -> Plugin:
    found = await t.tables.plugins.get(plugin.id)
    assert found is not None
    return found


async def test_a_confirmed_upload_stores_the_archive_and_asks_for_its_scan() -> None:
    t = twins()
    ns = await t.namespace("docs")
    upload, url = await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", "v1")
    assert (upload.version, upload.plugin_id) == ("1.0.0", PLUGIN_ID) and url.startswith("memory://")
    t.store.put_presigned(url, ARCHIVE)
    plugin = await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", upload.id)
    assert (plugin.id, plugin.status, plugin.scan_status) == (f"{ns.id}/{PLUGIN_ID}", "QUEUED", "scanning")
    assert await t.store.get_bytes(plugin.archive_uri, sha256_hex(ARCHIVE)) == ARCHIVE
    [(event, key)] = t.bus.published
    assert isinstance(event, PluginUploaded) and key == PLUGIN_ID
    assert (event.upload_id, event.archive_uri, event.archive_sha256, event.size_bytes) == (
        upload.id,
        plugin.archive_uri,
        sha256_hex(ARCHIVE),
        len(ARCHIVE),
    )


async def test_an_upload_is_refused_a_bad_version_a_missing_archive_and_an_oversized_one() -> None:
    t = twins(max_archive_bytes=len(ARCHIVE))
    await t.namespace("docs")
    with pytest.raises(Invalid, match="version: version 'latest' is not semantic versioning"):
        await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", "latest")
    with pytest.raises(TooLarge, match="file_size_bytes 100 exceeds") as declared:
        await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", "1.0.0", file_size_bytes=100)
    assert declared.value.hint == "don't bundle model weights; load them at init time"
    with pytest.raises(Conflict, match="no archive was uploaded for this upload_id") as missing:
        await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", await uploaded(t, None))
    assert missing.value.hint == "PUT the zip to presigned_url first, then confirm"
    with pytest.raises(TooLarge, match=f"archive is {len(ARCHIVE) + 1} bytes; the limit is 500 MB"):
        await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", await uploaded(t, ARCHIVE + b"!"))
    with pytest.raises(NotFound, match="upload 'upl_nope' not found"):
        await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", "upl_nope")
    assert t.bus.published == [] and await t.tables.plugins.find() == []


async def test_confirming_the_same_archive_again_changes_nothing() -> None:
    t = twins()
    await t.namespace("docs")
    first = await confirmed(t)
    await scan(t, verdict(first, passed=True))
    again = await confirmed(t)
    assert again == await stored(t, first) and again.scan_status == "passed"
    assert len(t.bus.events(PluginUploaded)) == 1


async def test_a_passed_version_is_immutable_but_a_failed_one_takes_another_archive() -> None:
    t = twins()
    await t.namespace("docs")
    first = await confirmed(t)
    await scan(t, verdict(first, passed=False))
    second = await confirmed(t, ARCHIVE + b" fixed")
    assert (second.archive_sha256, second.scan_status, second.status) == (
        sha256_hex(ARCHIVE + b" fixed"),
        "scanning",
        "QUEUED",
    )
    await scan(t, verdict(second, passed=True))
    with pytest.raises(Conflict, match=r"text_embed version 1\.0\.0 exists with another archive") as clash:
        await confirmed(t, ARCHIVE + b" other")
    assert clash.value.hint == "bump the version: published versions are immutable"
    assert (await stored(t, first)).archive_sha256 == second.archive_sha256
    assert len(t.bus.events(PluginUploaded)) == 2


async def test_a_scan_verdict_is_stored_and_a_stale_one_ignored() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    await scan(t, verdict(plugin, passed=True, sha="0" * 64))
    assert (await stored(t, plugin)).scan_status == "scanning"
    await scan(t, verdict(plugin, passed=False))
    failed = await stored(t, plugin)
    assert (failed.scan_status, failed.status, failed.violations, failed.error) == (
        "failed",
        "FAILED",
        [BAD],
        str(BAD),
    )
    replaced = await confirmed(t, ARCHIVE + b" fixed")
    await scan(t, verdict(replaced, passed=True))
    passed = await stored(t, plugin)
    assert (passed.scan_status, passed.status, passed.error, passed.violations) == ("passed", "NOT_DEPLOYED", None, [])
    assert passed.manifest is not None and passed.manifest.feature_extractor_name == "text_embed"
    await scan(t, verdict(plugin, passed=False))  # the first archive's verdict, replayed
    assert (await stored(t, plugin)).scan_status == "passed"


async def test_a_batch_deploy_during_the_scan_waits_and_is_carried_out_when_it_passes() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    pending = await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    assert (pending.deploy_pending, pending.status, pending.batch_enabled) == ("batch_only", "PENDING", False)
    assert (await stored(t, plugin)).deploy_pending == "batch_only"
    scanned = await plugins.apply_scan(t.c, verdict(plugin, passed=True))
    # Between the verdict and the deploy it waited for, a poll sees PENDING, never NOT_DEPLOYED.
    assert scanned is not None and (scanned.scan_status, scanned.status) == ("passed", "PENDING")
    await deployments.carry_out_pending(t.c, scanned)
    done = await stored(t, plugin)
    assert (done.status, done.deployment_type, done.batch_enabled, done.deploy_pending) == (
        "NOT_DEPLOYED",
        "batch_only",
        True,
        None,
    )
    await scan(t, verdict(plugin, passed=True))  # the verdict redelivered changes nothing
    assert await stored(t, plugin) == done
    again = await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    assert (again.batch_enabled, again.deploy_pending) == (True, None)


async def test_a_batch_deploy_during_a_failing_scan_is_dropped_and_a_failed_plugin_is_not_deployed() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    await scan(t, verdict(plugin, passed=False))
    failed = await stored(t, plugin)
    assert (failed.status, failed.batch_enabled, failed.deployment_type, failed.deploy_pending) == (
        "FAILED",
        False,
        None,
        None,
    )
    with pytest.raises(Conflict, match=f"{PLUGIN_ID} failed its scan and cannot be deployed") as refused:
        await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    assert refused.value.hint and "imports subprocess" in refused.value.hint


async def test_a_deploy_that_meets_the_verdict_deploys_at_once() -> None:
    """The verdict lands between the deploy's read and its compare-and-set: no PENDING is left behind."""
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    real_get = t.tables.plugins.get
    verdict_landed = False

    async def get_then_verdict(id: str) -> Plugin | None:
        nonlocal verdict_landed
        found = await real_get(id)
        if not verdict_landed:
            verdict_landed = True
            await scan(t, verdict(plugin, passed=True))
        return found

    t.tables.plugins.get = get_then_verdict  # type: ignore[method-assign]
    deployed = await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    assert (deployed.deploy_pending, deployed.batch_enabled) == (None, True)
    assert (await stored(t, plugin)).status == "NOT_DEPLOYED"


async def test_a_batch_deploy_and_an_undeploy_which_leaves_batches_usable() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    await scan(t, verdict(plugin, passed=True))
    with pytest.raises(Invalid, match="deployment_type 'realtime' is not known"):
        await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "realtime")
    with pytest.raises(DomainError, match=r"has no realtime\.py") as no_endpoint:
        await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, None)
    assert no_endpoint.value.status == 400 and "batch_only" in (no_endpoint.value.hint or "")
    await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    undeployed = await deployments.undeploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID)
    assert (undeployed.status, undeployed.batch_enabled) == ("NOT_DEPLOYED", True)
    after = await stored(t, plugin)
    assert (after.batch_enabled, after.deployment_type) == (True, "batch_only")
    # the deploy warms the first batch actor; the undeploy frees the warm actors (they start again on demand)
    [warm, stop] = t.bus.events(DeployRequested)
    assert (warm.action, warm.plugin_id, warm.namespace_id) == ("warm", PLUGIN_ID, plugin.namespace_id)
    assert warm.plugin is not None and warm.plugin.archive_sha256 == plugin.archive_sha256
    assert (stop.action, stop.deployment, stop.plugin_id) == ("undeploy", None, PLUGIN_ID)


async def test_an_undeploy_during_the_scan_drops_the_waiting_deploy() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")
    assert (await deployments.undeploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID)).status == "QUEUED"
    await scan(t, verdict(plugin, passed=True))
    assert (await stored(t, plugin)).batch_enabled is False


async def test_a_plugin_used_by_a_collection_is_not_deleted() -> None:
    t = twins()
    ns = await t.namespace("docs")
    plugin = await confirmed(t)
    collection = Collection(
        id="col_1",
        org_id=ns.org_id,
        namespace_id=ns.id,
        collection_name="notes",
        feature_extractors=[{"feature_extractor_name": "text_embed", "version": "1.0.0", "plugin_id": PLUGIN_ID}],
        bucket_ids=[],
        vector_indexes=[],
    )
    await t.tables.collections.insert(collection)
    with pytest.raises(Conflict, match=rf"{PLUGIN_ID} is used by collections \['col_1'\]") as used:
        await deployments.delete_plugin(t.c, ADMIN, "docs", PLUGIN_ID)
    assert used.value.hint == "delete those collections first"
    await t.tables.collections.delete(collection.id)
    await deployments.delete_plugin(t.c, ADMIN, "docs", PLUGIN_ID)
    assert await t.tables.plugins.get(plugin.id) is None
    with pytest.raises(NotFound, match=f"plugin '{PLUGIN_ID}' not found in namespace 'docs'"):
        await deployments.delete_plugin(t.c, ADMIN, "docs", PLUGIN_ID)


async def test_a_key_limited_to_another_namespace_finds_no_plugin() -> None:
    t = twins()
    await t.namespace("docs")
    other = await t.namespace("other")
    upload_id = await uploaded(t)
    await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", upload_id)
    outsider = limited_to(other.id)
    attempts = [
        plugins.create_plugin_upload(t.c, outsider, "docs", "text_embed", "1.0.0"),
        plugins.confirm_plugin_upload(t.c, outsider, "docs", upload_id),
        plugins.list_plugins(t.c, outsider, "docs", 0, 10),
        plugins.get_plugin(t.c, outsider, "docs", PLUGIN_ID),
        deployments.deploy_plugin(t.c, outsider, "docs", PLUGIN_ID, "batch_only"),
        deployments.undeploy_plugin(t.c, outsider, "docs", PLUGIN_ID),
        deployments.delete_plugin(t.c, outsider, "docs", PLUGIN_ID),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound, match="namespace 'docs' not found"):
            await attempt
    with pytest.raises(NotFound, match=r"upload .* not found"):  # by its own namespace: not there either
        await plugins.confirm_plugin_upload(t.c, outsider, "other", upload_id)
    assert await plugins.list_plugins(t.c, outsider, "other", 0, 10) == ([], 0)
    listed, total = await plugins.list_plugins(t.c, ADMIN, "docs", 0, 10)
    assert total == 1 and listed[0].plugin_id == PLUGIN_ID


async def test_a_deploy_queued_while_the_verdict_is_being_stored_is_carried_out() -> None:
    """The deploy lands between the verdict's read and its write: the verdict leaves it in place."""
    t = twins()
    await t.namespace("docs")
    plugin = await confirmed(t)
    real_get = t.tables.plugins.get
    deploying = False

    async def get_then_deploy(id: str) -> Plugin | None:
        nonlocal deploying
        found = await real_get(id)
        if not deploying:
            deploying = True
            assert (await deployments.deploy_plugin(t.c, ADMIN, "docs", PLUGIN_ID, "batch_only")).deploy_pending
        return found

    t.tables.plugins.get = get_then_deploy  # type: ignore[method-assign]
    await scan(t, verdict(plugin, passed=True))
    done = await stored(t, plugin)
    assert (done.scan_status, done.batch_enabled, done.deployment_type, done.deploy_pending) == (
        "passed",
        True,
        "batch_only",
        None,
    )
