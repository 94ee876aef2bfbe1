"""Plugin deployments: for batches (``?deployment_type=batch_only``) and real time (Ray Serve, blue-green).

Batch: the version may run in batches (``batch_enabled``); inference starts its warm actors on
demand. Real time: the registry names a deployment and asks inference for it (``plugin.deploy``);
inference reports its progress (``plugin.deployment``, :func:`apply_deployment`). In a namespace,
the deployment that serves a plugin *name* is its slot: deploying a new version, or the same
version again (with new ``params``), starts a deployment beside the serving one (``rollout``),
which takes over only once it is healthy; if it fails, the old one keeps serving and the status
says why. A deploy asked for while the scan runs is carried out when the scan passes.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from featurebus.common.events import DeploymentChanged, DeployRequested
from featurebus.common.objectstore import parse_s3_uri
from featurebus.common.queries import InferRequest
from featurebus.registry.auth import Principal, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, DomainError, Invalid, NotFound
from featurebus.registry.plugin_readiness import plugin_ref
from featurebus.registry.plugin_resolution import BATCH_ONLY
from featurebus.registry.records import Plugin, now
from featurebus.registry.usecases.plugins import get_plugin
from featurebus.registry.usecases.retrievers import answer_of
from featurebus.registry.usecases.secret_grants import forget_plugin

__all__ = [
    "BATCH_ONLY",
    "REALTIME",
    "apply_deployment",
    "carry_out_pending",
    "delete_plugin",
    "deploy_plugin",
    "infer",
    "serving_plugin",
    "stop_deployments",
    "undeploy_plugin",
]

log = logging.getLogger("featurebus.registry")

REALTIME = "realtime"


async def deploy_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str, deployment_type: str | None) -> Plugin:
    """The plugin as deployed, or as queued (``deploy_pending``) while its scan runs."""
    if deployment_type not in (None, BATCH_ONLY):
        raise Invalid(
            f"deployment_type {deployment_type!r} is not known",
            "leave it out for a real-time deployment, or use ?deployment_type=batch_only",
        )
    wanted = deployment_type or REALTIME
    plugin = await get_plugin(c, who, ns, plugin_id)
    if plugin.scan_status == "scanning":
        queued = {"deploy_pending": wanted, "status": "PENDING", "updated_at": now()}
        # Only while the scan still runs (the verdict may land between the read and this write).
        if await c.tables.plugins.update(plugin.id, queued, scan_status="scanning"):
            return plugin.model_copy(update=queued)
        plugin = await get_plugin(c, who, ns, plugin_id)
    if plugin.scan_status != "passed":
        raise Conflict(
            f"{plugin_id} failed its scan and cannot be deployed",
            "fix the violations and upload a new archive: " + "; ".join(str(v) for v in plugin.violations[:3]),
        )
    if wanted == BATCH_ONLY:
        return await _deploy_for_batches(c, plugin)
    return await _start_realtime(c, plugin)


async def carry_out_pending(c: Ctx, plugin: Plugin) -> None:
    """The deploy asked for during the scan, now that the scan passed (``plugin`` as stored after it)."""
    if plugin.deploy_pending == BATCH_ONLY:
        await _deploy_for_batches(c, plugin)
    elif plugin.deploy_pending == REALTIME:
        try:
            await _start_realtime(c, plugin)
        except DomainError as err:  # no realtime.py, or disabled meanwhile: said in the status
            failed = {"status": "FAILED", "error": err.detail, "deploy_pending": None, "updated_at": now()}
            await c.tables.plugins.update(plugin.id, failed, deploy_pending=REALTIME)


async def _deploy_for_batches(c: Ctx, plugin: Plugin) -> Plugin:
    deployed = {
        "status": "DEPLOYED" if plugin.serving else "NOT_DEPLOYED",
        "deployment_type": REALTIME if plugin.serving else BATCH_ONLY,
        "batch_enabled": True,
        "deploy_pending": None,
        "updated_at": now(),
    }
    # A passed version only changes by being deleted (and maybe uploaded again).
    if not await c.tables.plugins.update(
        plugin.id, deployed, archive_sha256=plugin.archive_sha256, scan_status="passed"
    ):
        raise _gone(plugin)
    ready = plugin.model_copy(update=deployed)
    # Its first batch actor starts now, not at the first frame (an organization plugin's start in
    # each namespace that uses it: they never share a worker process).
    if ready.enabled and plugin.namespace_id != plugin.org_id:
        warm = DeployRequested(
            org_id=plugin.org_id,
            namespace_id=plugin.namespace_id,
            action="warm",
            plugin_id=plugin.plugin_id,
            plugin=plugin_ref(ready),
        )
        await c.bus.publish(warm, key=_slot_key(plugin.namespace_id, plugin.name))
    return ready


async def _start_realtime(c: Ctx, plugin: Plugin) -> Plugin:
    if not (plugin.manifest and plugin.manifest.has_realtime):
        raise DomainError(
            f"{plugin.plugin_id} has no realtime.py, so it has no real-time endpoint to deploy",
            "add realtime.py (the guide's InferenceService), or deploy with ?deployment_type=batch_only",
        )
    serving = await serving_plugin(c, plugin.namespace_id, plugin.name)
    name = f"{plugin.namespace_id}-{plugin.plugin_id}-{secrets.token_hex(3)}"
    changes: dict[str, Any] = {
        "rollout": name,
        "rollout_error": None,
        "error": None,
        "deployment_type": REALTIME,
        "batch_enabled": True,
        "deploy_pending": None,
        "status": "DEPLOYED" if plugin.serving else "PENDING",
        "updated_at": now(),
    }
    started = plugin.model_copy(update=changes)
    ref = plugin_ref(started)  # Conflict when disabled
    if not await c.tables.plugins.update(
        plugin.id, changes, archive_sha256=plugin.archive_sha256, rollout=plugin.rollout
    ):
        raise Conflict(f"{plugin.plugin_id} is being deployed by another request", "retry in a moment")
    if plugin.rollout:  # a rollout still starting is superseded by this one
        await _stop(c, plugin, plugin.rollout)
    await c.bus.publish(
        DeployRequested(
            org_id=plugin.org_id,
            namespace_id=plugin.namespace_id,
            action="deploy",
            deployment=name,
            plugin_id=plugin.plugin_id,
            plugin=ref,
            replaces=serving.serving if serving else None,
        ),
        key=_slot_key(plugin.namespace_id, plugin.name),
    )
    return started


async def serving_plugin(c: Ctx, namespace_id: str, name: str) -> Plugin | None:
    """The version of plugin ``name`` whose real-time deployment serves the namespace now, if any."""
    versions = await c.tables.plugins.find(namespace_id=namespace_id, name=name)
    live = [p for p in versions if p.serving]
    return max(live, key=lambda p: p.deployed_at or p.updated_at) if live else None


async def apply_deployment(c: Ctx, event: DeploymentChanged) -> None:
    """Inference's report on a deployment: progress, the switch of traffic, or the failure."""
    plugin = await c.tables.plugins.get(f"{event.namespace_id}/{event.plugin_id}")
    wanted = plugin is not None and event.deployment in (plugin.rollout, plugin.serving)
    if plugin is None or not wanted:
        if event.status in ("IN_PROGRESS", "DEPLOYED"):  # deleted, undeployed or superseded meanwhile
            log.info("deployment %s is no longer wanted: stopping it", event.deployment)
            name = plugin.name if plugin else event.plugin_id  # (a deleted plugin's slot is gone)
            await _publish_stop(c, event.org_id, event.namespace_id, event.plugin_id, event.deployment, name)
        return
    if event.deployment != plugin.rollout:
        await _apply_restore(c, plugin, event)
        return
    changes: dict[str, Any] = {
        "replicas_ready": event.replicas_ready,
        "replicas_desired": event.replicas_desired,
        "updated_at": now(),
    }
    if event.status == "IN_PROGRESS":
        changes["status"] = "DEPLOYED" if plugin.serving else "IN_PROGRESS"
    elif event.status == "DEPLOYED":
        changes.update(serving=event.deployment, rollout=None, status="DEPLOYED", deployed_at=now(), error=None)
    elif event.status == "FAILED":
        kept = f"; {plugin.serving} keeps serving" if plugin.serving else ""
        changes.update(
            rollout=None, rollout_error=f"{event.error}{kept}", status="DEPLOYED" if plugin.serving else "FAILED"
        )
        if not plugin.serving:
            changes["error"] = event.error
    if not await c.tables.plugins.update(plugin.id, changes, rollout=event.deployment):
        return  # superseded between the read and the write
    if event.status == "DEPLOYED":
        await _hand_over(c, plugin, event)


async def _apply_restore(c: Ctx, plugin: Plugin, event: DeploymentChanged) -> None:
    """A report on the serving deployment: inference starting it again after a restart (or a
    redelivered DEPLOYED). Traffic stays on it whatever happens: its queries wait for it, or fail
    with the reason, and inference tries again."""
    changes: dict[str, Any] = {
        "replicas_ready": event.replicas_ready,
        "replicas_desired": event.replicas_desired,
        "updated_at": now(),
    }
    if event.status == "FAILED":
        changes.update(status="FAILED", error=event.error)
    elif event.status == "DEPLOYED" or plugin.status == "FAILED":
        changes.update(status="DEPLOYED", error=None)
    await c.tables.plugins.update(plugin.id, changes, serving=event.deployment, rollout=plugin.rollout)


async def _hand_over(c: Ctx, plugin: Plugin, event: DeploymentChanged) -> None:
    """The other versions of the slot that served until ``event.deployment`` took over serve no more."""
    for other in await c.tables.plugins.find(namespace_id=plugin.namespace_id, name=plugin.name):
        if other.id == plugin.id or not other.serving:
            continue
        replaced = {"serving": None, "status": "NOT_DEPLOYED", "replicas_ready": 0, "updated_at": now()}
        replaced["rollout_error"] = f"replaced by {plugin.plugin_id}"
        if await c.tables.plugins.update(other.id, replaced, serving=other.serving) and other.serving != event.replaced:
            await _stop(c, other, other.serving)  # inference retires only the one it was told of


async def undeploy_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> Plugin:
    """Stop the plugin's real-time deployment and free its warm batch actors.

    It stays usable for batches (its actors start again on demand) unless it is disabled; a deploy
    still waiting for the scan is dropped.
    """
    while True:  # retried only when another write landed between the read and the write
        plugin = await get_plugin(c, who, ns, plugin_id)
        status = {"passed": "NOT_DEPLOYED", "scanning": "QUEUED"}.get(plugin.scan_status, plugin.status)
        changes = {
            "serving": None,
            "rollout": None,
            "replicas_ready": 0,
            "replicas_desired": 0,
            "deployment_type": BATCH_ONLY if plugin.batch_enabled else None,
            "deploy_pending": None,
            "status": status,
            "updated_at": now(),
        }
        if await c.tables.plugins.update(
            plugin.id, changes, scan_status=plugin.scan_status, serving=plugin.serving, rollout=plugin.rollout
        ):
            break
    await stop_deployments(c, plugin)
    return plugin.model_copy(update=changes)


async def stop_deployments(c: Ctx, plugin: Plugin) -> None:
    """Ask inference to stop ``plugin``'s deployments (as it was read) and its warm batch actors."""
    names: list[str | None] = [d for d in (plugin.serving, plugin.rollout) if d] or [None]
    for name in names:
        await _stop(c, plugin, name)


async def _stop(c: Ctx, plugin: Plugin, deployment: str | None) -> None:
    await _publish_stop(c, plugin.org_id, plugin.namespace_id, plugin.plugin_id, deployment, plugin.name)


async def _publish_stop(
    c: Ctx, org_id: str, namespace_id: str, plugin_id: str, deployment: str | None, name: str
) -> None:
    """Ask inference to stop ``deployment`` (None: only the warm batch actors), in order with the
    other requests of the plugin's slot (one key per namespace and plugin name)."""
    request = DeployRequested(
        org_id=org_id, namespace_id=namespace_id, action="undeploy", deployment=deployment, plugin_id=plugin_id
    )
    await c.bus.publish(request, key=_slot_key(namespace_id, name))


def _slot_key(namespace_id: str, name: str) -> str:
    return f"{namespace_id}/{name}"


async def infer(
    c: Ctx, who: Principal, ns: str, plugin: str, inputs: dict[str, Any], parameters: dict[str, Any]
) -> tuple[Plugin, Any]:
    """``realtime.py``'s answer through the deployment serving ``plugin`` (a version id, or a name:
    the version serving it now)."""
    namespace = await resolve_namespace(c.tables, who, ns)
    found = await c.tables.plugins.get(f"{namespace.id}/{plugin}") or await serving_plugin(c, namespace.id, plugin)
    if found is None:
        raise NotFound(
            f"plugin {plugin!r} not found in namespace {ns!r}",
            "name a plugin version (e.g. text_embed_1_0_0) or a plugin deployed for real time (text_embed)",
        )
    if not found.enabled:
        raise Conflict(
            f"plugin {found.plugin_id} is disabled", f"enable it with POST .../plugins/org/{found.plugin_id}/enable"
        )
    if not found.serving and found.rollout:
        raise Conflict(
            f"{found.plugin_id}'s real-time deployment is starting ({found.replicas_ready} of "
            f"{found.replicas_desired or '?'} replicas ready)",
            f"retry when GET .../plugins/{found.plugin_id}/status says DEPLOYED",
        )
    if not found.serving:
        raise _not_serving(found)
    request = InferRequest(namespace_id=namespace.id, deployment=found.serving, inputs=inputs, parameters=parameters)
    answer = await answer_of("inference", c.queries.infer(request))
    return found, answer.output


def _not_serving(plugin: Plugin) -> Conflict:
    if plugin.rollout_error and plugin.rollout_error.startswith("replaced by "):
        successor = plugin.rollout_error.removeprefix("replaced by ")
        return Conflict(
            f"{plugin.plugin_id} was replaced by {successor}",
            f"call .../plugins/{plugin.name}/infer (the version serving now) or .../plugins/{successor}/infer",
        )
    return Conflict(
        f"{plugin.plugin_id} is not deployed for real time",
        f"POST .../plugins/{plugin.plugin_id}/deploy (without ?deployment_type=batch_only)",
    )


async def delete_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> None:
    """Delete a plugin version no collection uses: its secret grants, record, deployments, actors and archive."""
    plugin = await get_plugin(c, who, ns, plugin_id)
    users = [
        collection.id
        for collection in await c.tables.collections.find(namespace_id=plugin.namespace_id)
        if any(fe.get("plugin_id") == plugin_id for fe in collection.feature_extractors)
    ]
    if users:
        raise Conflict(f"{plugin_id} is used by collections {users}", "delete those collections first")
    await forget_plugin(c, plugin)  # first: a delete cut short leaves the plugin, never grants without it
    await c.tables.plugins.delete(plugin.id)
    await stop_deployments(c, plugin)
    await c.store.delete(parse_s3_uri(plugin.archive_uri)[1])


def _gone(plugin: Plugin) -> NotFound:
    return NotFound(f"plugin {plugin.plugin_id!r} was deleted meanwhile", "upload it again")
