"""The registry's Kafka subscribers: scan verdicts, deployment progress, batch requests and progress.

Each calls one use case; a :class:`~featurebus.registry.errors.DomainError` it raises sends the
message to the topic's DLQ with the error's text (hint included) as the reason.
"""

from __future__ import annotations

from featurebus.common.events import BatchIndexed, BatchPlanned, BatchRequested, DeploymentChanged, PluginScanned
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.registry.context import Ctx
from featurebus.registry.usecases import batches, deployments, plugins

__all__ = ["register"]


def register(bus: Bus, c: Ctx) -> None:
    # The REST routes publish these (batch.triggered also from batch.requested, below).
    bus.publishes(
        "plugin.uploaded",
        "plugin.deploy",
        "objects.ingested",
        "batch.triggered",
        "batch.cancelled",
        "collection.lifecycle",
    )

    @bus.subscriber("batch.requested", group="registry-batch-requests")
    async def on_batch_requested(event: BatchRequested) -> None:
        """A batch trigger sent on Kafka: the same path as POST .../batches/trigger (bad ones go to the DLQ)."""
        with span_for("registry.batch_requested", event):
            await batches.start_requested(c, event)

    @bus.subscriber("plugin.scanned", group="registry-scans")
    async def on_plugin_scanned(event: PluginScanned) -> None:
        """Store the scanner's verdict, violations and manifest on the plugin; carry out a deploy asked for meanwhile."""
        with span_for("registry.plugin_scanned", event):
            scanned = await plugins.apply_scan(c, event)
            if scanned is not None:
                await deployments.carry_out_pending(c, scanned)

    @bus.subscriber("plugin.deployment", group="registry-deployments")
    async def on_plugin_deployment(event: DeploymentChanged) -> None:
        """Inference's report on a real-time deployment: its status, and the switch of traffic to it."""
        with span_for("registry.plugin_deployment", event):
            await deployments.apply_deployment(c, event)

    @bus.subscriber("batch.planned", group="registry-batches-planned")
    async def on_batch_planned(event: BatchPlanned) -> None:
        """A batch became N frames of M rows (or could not be planned)."""
        with span_for("registry.batch_planned", event):
            await batches.record_planned(c, event)

    @bus.subscriber("batch.indexed", group="registry-batches-indexed")
    async def on_batch_indexed(event: BatchIndexed) -> None:
        """Record one frame's reconciled outcome (once) and refresh the batch's status."""
        with span_for("registry.batch_indexed", event):
            await batches.record_indexed(c, event)
