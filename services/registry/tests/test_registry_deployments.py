"""Real-time deployments on the twins: the deploy request, inference's reports, blue-green switches
and rollbacks, deploys that wait for the scan, undeploy and delete."""

from __future__ import annotations

import pytest
from registry_twins import ADMIN, Twins, twins

from featurebus.common.events import (
    DeploymentChanged,
    DeploymentStatus,
    DeployRequested,
    FeatureSpec,
    PluginManifest,
    PluginScanned,
    Violation,
)
from featurebus.registry.errors import Conflict, DomainError, NotFound
from featurebus.registry.records import Plugin
from featurebus.registry.usecases import deployments, plugins

FEATURES = [FeatureSpec(feature_name="text_embed_v1_embedding", embedding_dim=3)]


async def upload(t: Twins, version: str = "1.0.0", archive: bytes | None = None) -> Plugin:
    upload, url = await plugins.create_plugin_upload(t.c, ADMIN, "docs", "text_embed", version)
    t.store.put_presigned(url, archive or f"PK text_embed {version}".encode())
    return await plugins.confirm_plugin_upload(t.c, ADMIN, "docs", upload.id)


async def scan(t: Twins, plugin: Plugin, passed: bool = True, realtime: bool = True) -> Plugin:
    """The scanner's verdict as the registry's handler applies it."""
    manifest = PluginManifest(
        feature_extractor_name="text_embed", version=plugin.version, features=FEATURES, has_realtime=realtime
    )
    bad = [Violation(filename="pipeline.py", line=1, code="FB100", message="imports subprocess")]
    event = PluginScanned(
        org_id=plugin.org_id,
        namespace_id=plugin.namespace_id,
        plugin_id=plugin.plugin_id,
        archive_sha256=plugin.archive_sha256,
        passed=passed,
        violations=[] if passed else bad,
        manifest=manifest if passed else None,
    )
    scanned = await plugins.apply_scan(t.c, event)
    assert scanned is not None
    await deployments.carry_out_pending(t.c, scanned)
    return await stored(t, plugin)


async def stored(t: Twins, plugin: Plugin) -> Plugin:
    found = await t.tables.plugins.get(plugin.id)
    assert found is not None
    return found


async def ready(t: Twins, version: str = "1.0.0") -> Plugin:
    return await scan(t, await upload(t, version))


def report(request: DeployRequested, status: DeploymentStatus, **fields: object) -> DeploymentChanged:
    return DeploymentChanged(
        org_id=request.org_id,
        namespace_id=request.namespace_id,
        plugin_id=request.plugin_id,
        deployment=request.deployment or "",
        status=status,
        replaced=request.replaces if status == "DEPLOYED" else None,
        **fields,  # type: ignore[arg-type]
    )


def last_request(t: Twins) -> DeployRequested:
    request: DeployRequested = t.bus.events(DeployRequested)[-1]
    return request


async def deployed(t: Twins, plugin: Plugin) -> DeployRequested:
    """Deploy ``plugin`` for real time and let inference report it healthy."""
    await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    request = last_request(t)
    await deployments.apply_deployment(t.c, report(request, "DEPLOYED", replicas_ready=1, replicas_desired=1))
    return request


async def test_a_realtime_deploy_asks_inference_and_follows_its_reports() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    started = await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    assert (started.status, started.deployment_type, started.batch_enabled) == ("PENDING", "realtime", True)
    request = last_request(t)
    assert (request.action, request.plugin_id, request.replaces) == ("deploy", plugin.plugin_id, None)
    assert request.plugin is not None and request.plugin.features == FEATURES
    assert request.deployment == started.rollout
    await deployments.apply_deployment(t.c, report(request, "IN_PROGRESS", replicas_ready=0, replicas_desired=2))
    progress = await stored(t, plugin)
    assert (progress.status, progress.replicas_ready, progress.replicas_desired) == ("IN_PROGRESS", 0, 2)
    await deployments.apply_deployment(t.c, report(request, "DEPLOYED", replicas_ready=2, replicas_desired=2))
    live = await stored(t, plugin)
    assert (live.status, live.serving, live.rollout, live.replicas_ready) == ("DEPLOYED", request.deployment, None, 2)
    assert live.deployed_at is not None


async def test_a_new_version_takes_over_only_when_healthy_and_the_old_one_stops_serving() -> None:
    t = twins()
    await t.namespace("docs")
    v1 = await ready(t, "1.0.0")
    first = await deployed(t, v1)
    v2 = await ready(t, "2.0.0")
    await deployments.deploy_plugin(t.c, ADMIN, "docs", v2.plugin_id, None)
    second = last_request(t)
    assert second.replaces == first.deployment  # started beside v1's deployment, which keeps serving
    assert (await deployments.serving_plugin(t.c, v1.namespace_id, "text_embed")).plugin_id == v1.plugin_id  # type: ignore[union-attr]
    await deployments.apply_deployment(t.c, report(second, "DEPLOYED", replicas_ready=1, replicas_desired=1))
    old, new = await stored(t, v1), await stored(t, v2)
    assert (new.status, new.serving) == ("DEPLOYED", second.deployment)
    assert (old.status, old.serving, old.rollout_error) == ("NOT_DEPLOYED", None, "replaced by text_embed_2_0_0")
    assert (await deployments.serving_plugin(t.c, v1.namespace_id, "text_embed")).plugin_id == v2.plugin_id  # type: ignore[union-attr]
    # inference retires the replaced deployment itself: the registry asks for no other stop
    assert [r.action for r in t.bus.events(DeployRequested)] == ["deploy", "deploy"]


async def test_a_broken_version_rolls_back_and_the_status_says_why() -> None:
    t = twins()
    await t.namespace("docs")
    v1 = await ready(t, "1.0.0")
    first = await deployed(t, v1)
    v3 = await ready(t, "3.0.0")
    await deployments.deploy_plugin(t.c, ADMIN, "docs", v3.plugin_id, None)
    why = "health check failed: 'text_embed_v1_embedding' has 2 dimensions, the manifest says 3"
    await deployments.apply_deployment(t.c, report(last_request(t), "FAILED", error=why))
    broken, old = await stored(t, v3), await stored(t, v1)
    assert (broken.status, broken.error, broken.rollout, broken.serving) == ("FAILED", why, None, None)
    assert (old.status, old.serving) == ("DEPLOYED", first.deployment)


async def test_redeploying_a_serving_version_keeps_it_serving_through_a_failed_rollout() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    first = await deployed(t, plugin)
    again = await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    assert (again.status, again.serving) == ("DEPLOYED", first.deployment) and again.rollout
    assert last_request(t).replaces == first.deployment
    await deployments.apply_deployment(t.c, report(last_request(t), "FAILED", error="the plugin did not load: x"))
    kept = await stored(t, plugin)
    assert (kept.status, kept.serving, kept.rollout) == ("DEPLOYED", first.deployment, None)
    assert kept.rollout_error == f"the plugin did not load: x; {first.deployment} keeps serving"


async def test_a_serving_deployment_restored_after_a_restart_shows_its_progress_and_failure() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    request = await deployed(t, plugin)
    await deployments.apply_deployment(t.c, report(request, "IN_PROGRESS", replicas_ready=0, replicas_desired=1))
    restoring = await stored(t, plugin)
    assert (restoring.status, restoring.serving, restoring.replicas_ready) == ("DEPLOYED", request.deployment, 0)
    why = "the real-time deployment stopped (inference or Ray restarted) and could not be started again: boom"
    await deployments.apply_deployment(t.c, report(request, "FAILED", error=why))
    failed = await stored(t, plugin)
    assert (failed.status, failed.error, failed.serving) == ("FAILED", why, request.deployment)  # still routed to
    await deployments.apply_deployment(t.c, report(request, "DEPLOYED", replicas_ready=1, replicas_desired=1))
    back = await stored(t, plugin)
    assert (back.status, back.error, back.serving, back.replicas_ready) == ("DEPLOYED", None, request.deployment, 1)
    assert [r.action for r in t.bus.events(DeployRequested)] == ["deploy"]  # nothing stopped or redeployed


async def test_a_realtime_deploy_during_the_scan_is_carried_out_when_it_passes() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await upload(t)
    pending = await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    assert (pending.status, pending.deploy_pending) == ("PENDING", "realtime")
    assert t.bus.events(DeployRequested) == []
    after = await scan(t, plugin)
    assert (after.status, after.deploy_pending, after.rollout) == ("PENDING", None, last_request(t).deployment)


async def test_a_realtime_deploy_during_a_failing_scan_ends_failed_with_the_violations() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await upload(t)
    await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    failed = await scan(t, plugin, passed=False)
    assert (failed.status, failed.deploy_pending) == ("FAILED", None) and "subprocess" in (failed.error or "")
    assert t.bus.events(DeployRequested) == []


async def test_a_realtime_deploy_queued_for_a_plugin_without_realtime_py_fails_after_the_scan() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await upload(t)
    await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    failed = await scan(t, plugin, realtime=False)
    assert failed.status == "FAILED" and "has no realtime.py" in (failed.error or "")
    with pytest.raises(DomainError, match=r"has no realtime\.py"):
        await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)


async def test_undeploy_stops_the_deployment_and_the_actors_and_keeps_batches() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    request = await deployed(t, plugin)
    undeployed = await deployments.undeploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id)
    assert (undeployed.status, undeployed.serving, undeployed.batch_enabled) == ("NOT_DEPLOYED", None, True)
    stop = last_request(t)
    assert (stop.action, stop.deployment) == ("undeploy", request.deployment)
    with pytest.raises(Conflict, match="is not deployed for real time"):
        await deployments.infer(t.c, ADMIN, "docs", plugin.plugin_id, {"text": "q"}, {})


async def test_a_late_report_of_a_deployment_no_longer_wanted_stops_it() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)
    request = last_request(t)
    await deployments.undeploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id)  # while it was starting
    await deployments.apply_deployment(t.c, report(request, "DEPLOYED", replicas_ready=1, replicas_desired=1))
    assert (await stored(t, plugin)).serving is None
    stop = last_request(t)
    assert (stop.action, stop.deployment) == ("undeploy", request.deployment)


async def test_delete_removes_the_record_the_deployment_and_the_archive() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    request = await deployed(t, plugin)
    await deployments.delete_plugin(t.c, ADMIN, "docs", plugin.plugin_id)
    assert await t.tables.plugins.get(plugin.id) is None
    assert (last_request(t).action, last_request(t).deployment) == ("undeploy", request.deployment)
    assert await t.store.size(plugin.archive_uri.split("/", 3)[3]) is None
    with pytest.raises(NotFound):
        await deployments.infer(t.c, ADMIN, "docs", plugin.plugin_id, {"text": "q"}, {})


async def test_a_disabled_plugin_is_neither_deployed_nor_answering() -> None:
    t = twins()
    await t.namespace("docs")
    plugin = await ready(t)
    await deployed(t, plugin)
    await t.tables.plugins.update(plugin.id, {"enabled": False})
    with pytest.raises(Conflict, match="disabled"):
        await deployments.infer(t.c, ADMIN, "docs", plugin.plugin_id, {"text": "q"}, {})
    with pytest.raises(Conflict, match="disabled"):
        await deployments.deploy_plugin(t.c, ADMIN, "docs", plugin.plugin_id, None)


async def test_infer_goes_to_the_serving_deployment_by_version_or_by_name() -> None:
    t = twins()
    await t.namespace("docs")
    v1 = await ready(t, "1.0.0")
    await deployments.deploy_plugin(t.c, ADMIN, "docs", v1.plugin_id, None)
    with pytest.raises(Conflict, match="real-time deployment is starting") as starting:
        await deployments.infer(t.c, ADMIN, "docs", v1.plugin_id, {"text": "q"}, {})
    assert "says DEPLOYED" in (starting.value.hint or "")
    request = last_request(t)
    await deployments.apply_deployment(t.c, report(request, "DEPLOYED", replicas_ready=1, replicas_desired=1))
    for name in (v1.plugin_id, "text_embed"):
        served, output = await deployments.infer(t.c, ADMIN, "docs", name, {"text": "q"}, {"k": 1})
        assert (served.plugin_id, output) == (v1.plugin_id, {"echo": {"text": "q"}})
    assert [(r.deployment, r.parameters, r.namespace_id) for r in t.queries.inferred] == [
        (request.deployment, {"k": 1}, v1.namespace_id)
    ] * 2
    v2 = await ready(t, "2.0.0")
    second = await deployed(t, v2)
    served, _ = await deployments.infer(t.c, ADMIN, "docs", "text_embed", {"text": "q"}, {})
    assert served.plugin_id == v2.plugin_id and t.queries.inferred[-1].deployment == second.deployment
    with pytest.raises(Conflict, match="was replaced by text_embed_2_0_0") as replaced:
        await deployments.infer(t.c, ADMIN, "docs", v1.plugin_id, {"text": "q"}, {})
    assert ".../plugins/text_embed/infer" in (replaced.value.hint or "")
