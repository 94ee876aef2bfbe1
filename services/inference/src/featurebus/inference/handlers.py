"""The inference service's Kafka subscribers: frames, cancelled batches, deploy requests (queries come over its internal API, ``query_api.py``)."""

from __future__ import annotations

import logging

from featurebus.common.cancellations import TOPIC as CANCELLED_TOPIC
from featurebus.common.cancellations import CancelledBatches
from featurebus.common.events import BatchCancelled, BatchReady, DeploymentChanged, DeployRequested
from featurebus.common.kafka import Bus
from featurebus.common.metrics import count_frame
from featurebus.common.telemetry import span_for
from featurebus.inference.deploying import Deployer
from featurebus.inference.processing import Inference

log = logging.getLogger("featurebus.inference")

__all__ = ["BATCH_GROUP", "DEPLOY_GROUP", "register"]

BATCH_GROUP = "inference-batch"
DEPLOY_GROUP = "inference-deploy"
# Rollouts of different plugins run side by side (each consumer takes whole partitions; a slot's
# requests share a key, so they stay in order).
DEPLOY_WORKERS = 4


def register(
    bus: Bus, inference: Inference, cancelled: CancelledBatches, deployer: Deployer, frame_workers: int = 1
) -> None:
    """Subscribe the handlers; ``frame_workers`` consumers take frames in parallel (one per partition).

    ``cancelled`` is filled from ``batch.cancelled``: the frames of those batches are acknowledged, not run.
    """
    bus.publishes("vectors.produced", "plugin.deployment")

    # A frame may run up to frame_timeout_s; Kafka must not consider the consumer dead meanwhile
    # (aiokafka's default max_poll_interval is 300 s, below the default frame timeout).
    poll_ms = int((inference.frame_timeout_s + 60) * 1000)

    # With frame_workers > 1, FastStream runs that many consumers of the group in this process:
    # partitions are processed in parallel, each in order, each committed after its handler.
    @bus.subscriber("batch.ready", group=BATCH_GROUP, max_poll_interval_ms=poll_ms, max_workers=frame_workers)
    async def on_batch_ready(event: BatchReady) -> None:
        """Run one frame on the plugin's warm actor pool and announce its vector set (unless cancelled)."""
        with span_for("inference.batch_ready", event):
            if event.batch_id in cancelled:
                log.info("batch=%s cancelled: frame %s acknowledged, not run", event.batch_id, event.frame_id)
                return
            produced = await inference.run_frame(event)
            await bus.publish(produced, key=event.batch_id)
            count_frame("inference", produced.rows_in, produced.failures)

    @bus.broadcast_subscriber(CANCELLED_TOPIC, from_beginning=True)
    async def on_batch_cancelled(event: BatchCancelled) -> None:
        """Remember a cancelled batch (every inference process, the whole retained log on start)."""
        cancelled.add(event)

    rollout_s = deployer.realtime.start_timeout_s + deployer.realtime.probe_timeout_s

    @bus.subscriber(
        "plugin.deploy",
        group=DEPLOY_GROUP,
        max_poll_interval_ms=int((rollout_s + 60) * 1000),
        max_workers=DEPLOY_WORKERS,
    )
    async def on_plugin_deploy(event: DeployRequested) -> None:
        """Start (blue-green) or stop a real-time deployment; its progress goes to plugin.deployment."""
        with span_for("inference.plugin_deploy", event):

            async def report(changed: DeploymentChanged) -> None:
                await bus.publish(changed, key=f"{event.namespace_id}/{event.plugin_id}")

            await deployer.apply(event, report)
