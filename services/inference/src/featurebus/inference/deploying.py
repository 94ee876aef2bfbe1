"""What inference does with a deploy request (``plugin.deploy``): no Kafka or Ray here.

A deploy starts a real-time deployment of the plugin version (blue-green: :mod:`rollout`); an
undeploy stops one, and frees the plugin's warm batch actors of the namespace (they start again
when a frame needs them); a warm (a batch-only deploy) starts the first batch actor of the plugin
in the namespace, so that its environment, models and load are done before its first frame.
Progress goes to ``report`` (``plugin.deployment`` in the service).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from featurebus.common.events import DeploymentChanged, DeployRequested, PluginRef
from featurebus.inference.pools import Pools
from featurebus.inference.rollout import Realtime, Report
from featurebus.runtime import PluginError

__all__ = ["Deployer"]

log = logging.getLogger("featurebus.inference.deploying")


class Deployer:
    def __init__(self, realtime: Realtime, pools: Pools) -> None:
        self.realtime = realtime
        self.pools = pools

    async def apply(self, event: DeployRequested, report: Report) -> None:
        """Carry out ``event``; a deploy ends with DEPLOYED or FAILED reported, an undeploy with NOT_DEPLOYED."""
        if event.action == "undeploy":
            freed = await self.pools.drop(event.namespace_id, event.plugin_id)
            log.info("undeploy %s in %s: %d batch actors freed", event.plugin_id, event.namespace_id, freed)
            if event.deployment:
                await self.realtime.undeploy(event, report)
            return
        if event.plugin is None:
            raise ValueError("a deploy or warm request needs plugin")  # a malformed message: to the DLQ
        # The namespace it runs for: never a process shared with another (DESIGN.md §2).
        plugin = event.plugin.model_copy(update={"namespace_id": event.namespace_id})
        if event.action == "warm":
            await self._warm(plugin)
            return
        if not event.deployment:
            raise ValueError("a deploy request needs deployment")
        if not await self.pools.make_room(plugin):
            log.warning("%s: the cluster has no free room for its replicas now; they wait for it", event.deployment)
        try:
            await self.realtime.deploy(event.model_copy(update={"plugin": plugin}), report)
        except Exception as exc:  # Serve refused or failed: said in the status, never left IN_PROGRESS
            log.exception("deploying %s as %s failed", event.plugin_id, event.deployment)
            with contextlib.suppress(Exception):
                await self.realtime.stop(event.deployment)
            await report(_failed(event, f"the deployment could not be started: {type(exc).__name__}: {exc}"))

    async def _warm(self, plugin: PluginRef) -> None:
        """The plugin's first batch actor, started and loaded; a failure is logged, and the frames
        then fail with it as they would have."""
        try:
            archive = await self.realtime.archives.get(plugin)
            # An actor the cluster has no room for yet waits for it; the deploy consumer does not.
            stats = await asyncio.wait_for(self.pools.warm(plugin, lambda: archive), self.realtime.start_timeout_s)
        except PluginError as err:
            log.warning("warming %s in %s failed: %s", plugin.plugin_id, plugin.namespace_id, err.message)
            return
        except TimeoutError:
            log.warning(
                "warm %s in %s: its actor is still starting; frames wait for it", plugin.plugin_id, plugin.namespace_id
            )
            return
        if stats is None:
            log.info("warm %s in %s: its pool was warm already", plugin.plugin_id, plugin.namespace_id)
        elif stats.get("load_error"):
            log.warning(
                "warm %s in %s: it did not load: %s", plugin.plugin_id, plugin.namespace_id, stats["load_error"]
            )
        else:
            log.info(
                "warm %s in %s: an actor loaded it in %.1f s",
                plugin.plugin_id,
                plugin.namespace_id,
                float(stats.get("load_seconds") or 0.0),
            )


def _failed(event: DeployRequested, error: str) -> DeploymentChanged:
    return DeploymentChanged(
        org_id=event.org_id,
        namespace_id=event.namespace_id,
        plugin_id=event.plugin_id,
        deployment=event.deployment or "",
        status="FAILED",
        error=error,
    )
