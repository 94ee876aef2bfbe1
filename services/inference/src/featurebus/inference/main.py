"""Composition root of the inference service: settings, Ray, pools, object store, Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

from featurebus.common import telemetry
from featurebus.common.kafka import Bus
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.inference.config import InferenceSettings
from featurebus.inference.handlers import register
from featurebus.inference.pools import Pools, RayPools
from featurebus.inference.work import ArchiveCache, Inference
from featurebus.sdk.models import offline_env, seed_offline_models

__all__ = ["InferenceService", "build", "main"]

log = logging.getLogger("featurebus.inference")


@dataclass
class InferenceService:
    settings: InferenceSettings
    bus: Bus
    store: ObjectStore
    pools: Pools
    inference: Inference

    async def start(self) -> None:
        await until_ready("kafka", self.bus.ensure_topics)
        await until_ready("the object store", self.store.ensure_bucket)
        await self.bus.broker.start()

    async def stop(self) -> None:
        await self.bus.broker.stop()
        await self.store.close()


def start_ray(settings: InferenceSettings) -> None:
    """Connect to RAY_ADDRESS / settings.ray_address, or start Ray inside this process."""
    import ray

    models = settings.models_dir
    seed_offline_models(models)
    env = offline_env(models)
    os.environ.update(env)  # inherited by local Ray workers
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = settings.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        passthrough = {k: v for k, v in os.environ.items() if k.startswith("FEATUREBUS_")}
        ray.init(address=address, runtime_env={"env_vars": {**env, **passthrough}}, log_to_driver=True)
        return
    # Ray's socket paths must stay under 108 characters: a short temp dir per data dir.
    temp = f"/tmp/fb-ray-{hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]}"
    ray.init(
        num_cpus=settings.ray_num_cpus,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=True,
        logging_level=logging.WARNING,
    )


def build(
    settings: InferenceSettings | None = None,
    *,
    bus: Bus | None = None,
    store: ObjectStore | None = None,
    pools: Pools | None = None,
) -> InferenceService:
    settings = settings or InferenceSettings()
    bus = bus or Bus(settings, client_id="inference")
    store = store or ObjectStore(settings)
    pools = pools or RayPools(settings.plugins_dir / "work", settings.actor_num_cpus, settings.actor_idle_seconds)
    inference = Inference(
        store,
        pools,
        ArchiveCache(store, settings.plugins_dir / "archives"),
        settings.frame_timeout_s,
        settings.max_actor_deaths_per_frame,
    )
    register(bus, inference)
    return InferenceService(settings, bus, store, pools, inference)


async def _run(settings: InferenceSettings) -> None:
    start_ray(settings)
    (settings.plugins_dir / "work").mkdir(parents=True, exist_ok=True)
    service = build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await service.start()
    log.info("inference ready (Ray resources: %s)", _resources())
    reaper = asyncio.create_task(_reap(service.pools, stop))
    await stop.wait()
    log.info("stopping: finishing the message in hand, then shutting down Ray")
    reaper.cancel()
    await service.stop()
    import ray

    ray.shutdown()


async def _reap(pools: Pools, stop: asyncio.Event) -> None:
    reap = getattr(pools, "reap_idle", None)
    while reap and not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 30)
        await reap()


def _resources() -> dict[str, Any]:
    import ray

    return dict(ray.cluster_resources())


def main() -> None:
    settings = InferenceSettings()
    telemetry.configure("inference", settings.log_level, settings.trace_to_log)
    asyncio.run(_run(settings))
