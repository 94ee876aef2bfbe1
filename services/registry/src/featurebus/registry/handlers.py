"""The registry's Kafka subscribers: scan verdicts, batch progress, retrieval answers."""

from __future__ import annotations

import logging

from beanie.operators import Set

from featurebus.common import ids
from featurebus.common.events import BatchIndexed, BatchPlanned, BatchRequested, PluginScanned, RetrievalAnswered
from featurebus.common.kafka import Bus
from featurebus.common.telemetry import span_for
from featurebus.registry.answers import Answers
from featurebus.registry.batch_progress import record_indexed, record_planned
from featurebus.registry.batch_start import start_batch
from featurebus.registry.documents import BucketDoc, NamespaceDoc, PluginDoc, now
from featurebus.registry.errors import NotFound

__all__ = ["register"]

log = logging.getLogger("featurebus.registry")


async def apply_scan(event: PluginScanned) -> None:
    plugin = await PluginDoc.get(f"{event.namespace_id}/{event.plugin_id}")
    if plugin is None or plugin.archive_sha256 != event.archive_sha256:
        log.info("stale scan verdict for %s ignored", event.plugin_id)
        return
    errors = [str(v) for v in event.violations if v.severity == "ERROR"]
    # Only the scan's fields: a deploy queued meanwhile (deploy_pending) is not overwritten.
    await plugin.set(
        {
            PluginDoc.scan_status: "passed" if event.passed else "failed",
            PluginDoc.violations: event.violations,
            PluginDoc.manifest: event.manifest,
            PluginDoc.status: "NOT_DEPLOYED" if event.passed else "FAILED",
            PluginDoc.error: None if event.passed else "; ".join(errors[:5]) or "scan failed",
            PluginDoc.updated_at: now(),
        }
    )
    # A batch deploy asked for during the scan: carried out now, or dropped with the scan's failure.
    deployed = {PluginDoc.batch_enabled: True, PluginDoc.deployment_type: "batch_only"} if event.passed else {}
    await PluginDoc.find_one(PluginDoc.id == plugin.id, PluginDoc.deploy_pending == "batch_only").update(
        Set({**deployed, PluginDoc.deploy_pending: None})  # type: ignore[no-untyped-call]
    )


async def apply_batch_request(bus: Bus, event: BatchRequested) -> None:
    namespace = await NamespaceDoc.get(event.namespace_id)
    bucket = await BucketDoc.get(event.bucket_id)
    if namespace is None or namespace.org_id != event.org_id:
        raise NotFound(f"batch.requested: namespace {event.namespace_id!r} of org {event.org_id!r} does not exist")
    if bucket is None or bucket.namespace_id != namespace.id:
        raise NotFound(f"batch.requested: bucket {event.bucket_id!r} is not in namespace {namespace.id!r}")
    # Without a batch id, one derived from the event: a replayed request starts no second batch.
    batch_id = event.batch_id or ids.deterministic_id("btch", event.event_id)
    await start_batch(bus, namespace, bucket, event.collection_ids, event.object_ids, batch_id)


def register(bus: Bus, answers: Answers) -> None:
    # The REST routes publish these (batch.triggered also from batch.requested, below).
    bus.publishes(
        "plugin.uploaded", "objects.ingested", "batch.triggered", "collection.lifecycle", "retrieval.requested"
    )

    @bus.subscriber("batch.requested", group="registry-batch-requests")
    async def on_batch_requested(event: BatchRequested) -> None:
        """A batch trigger sent on Kafka: the same path as POST .../batches/trigger (bad ones go to the DLQ)."""
        with span_for("registry.batch_requested", event):
            await apply_batch_request(bus, event)

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
    @bus.broadcast_subscriber("retrieval.answered")
    async def on_retrieval_answered(event: RetrievalAnswered) -> None:
        """Hand a search's answer to the execute call waiting for it."""
        answers.deliver(event)
