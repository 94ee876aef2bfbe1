"""What inference does with a deploy request (``plugin.deploy``): no Kafka or Ray here.

A deploy starts a real-time deployment of the plugin version (blue-green: :mod:`rollout`); an
undeploy stops one, and frees the plugin's warm batch actors of the namespace (they start again
when a frame needs them). Progress goes to ``report`` (``plugin.deployment`` in the service).
"""

from __future__ import annotations

import contextlib
import logging

from featurebus.common.events import DeploymentChanged, DeployRequested
from featurebus.inference.pools import Pools
from featurebus.inference.rollout import Realtime, Report

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
        if event.plugin is None or not event.deployment:
            raise ValueError("a deploy request needs plugin and deployment")  # a malformed message: to the DLQ
        # The namespace it runs for: never a process shared with another (DESIGN.md §2).
        plugin = event.plugin.model_copy(update={"namespace_id": event.namespace_id})
        if not await self.pools.make_room(plugin):
            log.warning("%s: the cluster has no free room for its replicas now; they wait for it", event.deployment)
        try:
            await self.realtime.deploy(event.model_copy(update={"plugin": plugin}), report)
        except Exception as exc:  # Serve refused or failed: said in the status, never left IN_PROGRESS
            log.exception("deploying %s as %s failed", event.plugin_id, event.deployment)
            with contextlib.suppress(Exception):
                await self.realtime.stop(event.deployment)
            await report(_failed(event, f"the deployment could not be started: {type(exc).__name__}: {exc}"))


def _failed(event: DeployRequested, error: str) -> DeploymentChanged:
    return DeploymentChanged(
        org_id=event.org_id,
        namespace_id=event.namespace_id,
        plugin_id=event.plugin_id,
        deployment=event.deployment or "",
        status="FAILED",
        error=error,
    )
