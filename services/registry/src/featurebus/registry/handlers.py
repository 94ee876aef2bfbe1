"""The registry's Kafka subscribers: scan verdicts, batch progress, retrieval answers."""

from __future__ import annotations

import logging

from faststream.kafka import TopicPartition

from featurebus.common.events import BatchIndexed, BatchPlanned, PluginScanned, RetrievalAnswered
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.registry.answers import Answers
from featurebus.registry.batches import record_indexed, record_planned
from featurebus.registry.documents import PluginDoc, now

__all__ = ["register"]

log = logging.getLogger("featurebus.registry")


async def apply_scan(event: PluginScanned) -> None:
    plugin = await PluginDoc.get(f"{event.namespace_id}/{event.plugin_id}")
    if plugin is None or plugin.archive_sha256 != event.archive_sha256:
        log.info("stale scan verdict for %s ignored", event.plugin_id)
        return
    plugin.scan_status = "passed" if event.passed else "failed"
    plugin.violations, plugin.manifest = event.violations, event.manifest
    if event.passed:
        plugin.status, plugin.error = "NOT_DEPLOYED", None
    else:
        errors = [str(v) for v in event.violations if v.severity == "ERROR"]
        plugin.status, plugin.error = "FAILED", "; ".join(errors[:5]) or "scan failed"
    plugin.updated_at = now()
    await plugin.save()


def register(bus: Bus, answers: Answers) -> None:
    @bus.subscriber("plugin.scanned", group="registry-scans")
    async def on_plugin_scanned(event: PluginScanned) -> None:
        """Store the scanner's verdict, violations and manifest on the plugin."""
        with span_for("registry.plugin_scanned", event):
            await apply_scan(event)

    @bus.subscriber("batch.planned", group="registry-batches-planned")
    async def on_batch_planned(event: BatchPlanned) -> None:
        """A batch became N frames of M rows (or could not be planned)."""
        with span_for("registry.batch_planned", event):
            await record_planned(event)

    @bus.subscriber("batch.indexed", group="registry-batches-indexed")
    async def on_batch_indexed(event: BatchIndexed) -> None:
        """Record one frame's reconciled outcome (once) and refresh the batch's status."""
        with span_for("registry.batch_indexed", event):
            await record_indexed(event)

    # Every registry process reads every answer (manual assignment, no consumer group: instant on
    # start, nothing to commit) and resolves only the requests it is waiting for.
    topic = bus.topic("retrieval.answered")

    @bus.broker.subscriber(
        partitions=[TopicPartition(topic, p) for p in range(bus.settings.topic_partitions)],
        auto_offset_reset="latest",
    )
    async def on_retrieval_answered(event: RetrievalAnswered) -> None:
        """Hand a search's answer to the execute call waiting for it."""
        answers.deliver(event)
