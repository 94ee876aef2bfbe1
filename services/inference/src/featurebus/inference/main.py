"""Composition root of the inference service: settings, Ray, pools, object store, Kafka, the embed API."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import FastAPI

from featurebus.common import telemetry
from featurebus.common.cancellations import CancelledBatches
from featurebus.common.events import DeploymentChanged
from featurebus.common.internal_api import InternalServer
from featurebus.common.kafka import Bus
from featurebus.common.lifecycle import run_until_signalled
from featurebus.common.metrics import ProcessMetrics
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.inference.access_supply import AccessSupply
from featurebus.inference.config import InferenceSettings
from featurebus.inference.deploying import Deployer
from featurebus.inference.enrichment import Enricher
from featurebus.inference.handlers import register
from featurebus.inference.model_shipping import ModelShipper, RegistryModels
from featurebus.inference.pools import Pools
from featurebus.inference.processing import ArchiveCache, Inference
from featurebus.inference.query_api import build_query_api
from featurebus.inference.reranking import Rerankers
from featurebus.inference.rollout import DeploymentRecords, Realtime
from featurebus.sdk.model_loading import offline_env, seed_offline_models

if TYPE_CHECKING:
    from featurebus.inference.ray_actors import SandboxSettings

__all__ = ["InferenceService", "build", "check_sandbox", "check_sandbox_on_workers", "main"]

log = logging.getLogger("featurebus.inference")

RAY_START_ATTEMPTS = 3


@dataclass
class InferenceService:
    settings: InferenceSettings
    bus: Bus
    store: ObjectStore
    pools: Pools
    inference: Inference
    api: FastAPI  # the internal embed API (tests call it through httpx's ASGITransport)
    server: InternalServer  # serves ``api`` from start() to stop()
    rerankers: Rerankers
    enricher: Enricher
    cancelled: CancelledBatches = field(default_factory=CancelledBatches)

    _reaper: asyncio.Task[None] | None = None
    _restore: asyncio.Task[None] | None = None
    metrics: ProcessMetrics = field(init=False)  # consumer lag and DLQ depth (/metrics is on the internal API)

    def __post_init__(self) -> None:
        self.metrics = ProcessMetrics(self.bus)

    async def start(self) -> None:
        # Queries first: they need only the object store and Ray, not Kafka.
        if self.settings.internal_token is None:
            log.error("FEATUREBUS_INTERNAL_TOKEN is not set: the embed API refuses every request")
        await self.server.start()
        await until_ready("kafka", self.bus.ensure_topics)
        await until_ready("the object store", self.store.ensure_bucket)
        # Before any frame is consumed: a batch cancelled while this process was down stays cancelled.
        await until_ready("the cancelled batches (batch.cancelled)", lambda: self.cancelled.catch_up(self.bus))
        await self.bus.broker.start()
        await self.metrics.start()
        realtime = self.inference.realtime
        if realtime is not None:  # the deployments a restart stopped start again (they report on Kafka)
            self._restore = asyncio.create_task(_logged(realtime.restore_all(), "restoring real-time deployments"))
        period = min(30.0, max(1.0, self.settings.actor_idle_seconds / 2))
        self._reaper = asyncio.create_task(_reap_every(self.pools.reap_idle, period))

    async def stop(self) -> None:
        for task in (self._reaper, self._restore):
            if task is not None:
                task.cancel()
        if self.inference.realtime is not None:
            await self.inference.realtime.close()
        await self.server.stop()
        await self.metrics.stop()
        self.rerankers.close()
        self.enricher.close()
        await self.bus.broker.stop()  # waits (up to FastStream's graceful timeout) for the handler in hand
        await self.store.close()


def start_ray(settings: InferenceSettings) -> None:
    """Connect to RAY_ADDRESS / settings.ray_address, or start Ray inside this process."""
    models = settings.models_dir
    seed_offline_models(models)
    env = offline_env(models)
    os.environ.update(env)  # inherited by local Ray workers
    # Ray reads these once, when it is imported.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray runs its workers at nice 15; but retriever queries are embedded on the plugins' actors,
    # and at nice 15 the model runs only when the services leave a core idle, so a query waits
    # behind them (bench/retrieval_latency.py, 16 clients: p99 981 -> 689 ms at nice 0). Plugin
    # code stays bounded by its sandbox's CPU budget.
    os.environ.setdefault("RAY_worker_niceness", "0")
    import ray

    address = settings.ray_address
    if address:
        # Actors on other nodes read assets with the SDK: they get this service's resolved object
        # store settings (defaults included) and log level, and nothing else of its configuration
        # (no database URI, no API key: plugin code runs there).
        store = {f"FEATUREBUS_{k.upper()}": str(v) for k, v in settings.model_dump().items() if k.startswith("s3_")}
        worker_env = {**env, **store, "FEATUREBUS_LOG_LEVEL": settings.log_level}
        ray.init(address=address, runtime_env={"env_vars": worker_env}, log_to_driver=True)
        log.info("joined the Ray cluster at %s: %s", address, dict(ray.cluster_resources()))
        _start_serve()
        return
    # Ray's socket paths must stay under 108 characters: a short temp dir per data dir.
    temp = f"/tmp/fb-ray-{hashlib.sha1(str(settings.data_dir.resolve()).encode()).hexdigest()[:8]}"
    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            ray.init(
                num_cpus=settings.ray_num_cpus,
                include_dashboard=False,
                _temp_dir=temp,
                log_to_driver=True,
                logging_level=logging.WARNING,
            )
            break
        except Exception as exc:  # Ray gives its raylet 30 s to register; a loaded machine can miss that
            ray.shutdown()
            if attempt == RAY_START_ATTEMPTS:
                raise
            log.warning("starting Ray failed (attempt %d of %d), retrying: %s", attempt, RAY_START_ATTEMPTS, exc)
    log.info("Ray started in this process: %s", dict(ray.cluster_resources()))
    _start_serve()


def _start_serve() -> None:
    from featurebus.inference.serve_backend import start_serve

    start_serve()
    log.info("Ray Serve started for real-time deployments (no HTTP proxy: they are called through handles)")


def build(
    settings: InferenceSettings | None = None,
    *,
    bus: Bus | None = None,
    store: ObjectStore | None = None,
    pools: Pools | None = None,
    realtime: Realtime | None = None,
) -> InferenceService:
    """Wire the service; tests pass twins (an in-memory store, Ray-free pools, a fake Serve) for the real adapters.

    Opens no connection: :meth:`InferenceService.start` does. The default pools and real-time
    deployments need ``start_ray``.
    """
    settings = settings or InferenceSettings()
    bus = bus or Bus(settings, client_id="inference")
    store = store or ObjectStore(settings)
    held: dict[int | str, dict[str, float]] = {}  # Ray resources of the batch actors and the replicas
    shipper = None
    access = AccessSupply(settings.registry_internal_url, settings.internal_token, settings.llm())
    if pools is None or realtime is None:
        import ray  # the models a plugin names travel to its workers' nodes through Ray's object store

        registry = RegistryModels(settings.registry_internal_url, settings.internal_token)
        shipper = ModelShipper(store, put=ray.put, registry=registry, fetch_wait_s=settings.model_fetch_wait_s)
    if pools is None:
        from featurebus.inference.ray_actors import RayPools  # Ray only where it is used

        pools = RayPools(
            settings.plugins_dir / "work",
            settings.actor_num_cpus,
            settings.actor_idle_seconds,
            settings.load_failure_retry_s,
            models=settings.node_models(),
            gpu_memory_gb=settings.gpu_memory_gb,
            sandbox=_sandbox(settings),
            held=held,
            shipper=shipper,
            access=access,
            environments=settings.plugin_environments(),
        )
    archives = ArchiveCache(store, settings.plugins_dir / "archives", [s for s in (shipper, access) if s is not None])
    if realtime is None:
        from featurebus.inference.serve_backend import RayServeBackend  # Ray Serve only where it is used

        backend = RayServeBackend(
            settings.plugins_dir / "work",
            settings.realtime_replica_num_cpus,
            models=settings.node_models(),
            gpu_memory_gb=settings.gpu_memory_gb,
            sandbox=_sandbox(settings),
            held=held,
            shipper=shipper,
            environments=settings.plugin_environments(),
        )

        async def report(changed: DeploymentChanged) -> None:  # restores' progress, as a rollout's
            await bus.publish(changed, key=f"{changed.namespace_id}/{changed.plugin_id}")

        realtime = Realtime(
            backend,
            DeploymentRecords(store),
            archives,
            report=report,
            start_timeout_s=settings.realtime_start_timeout_s,
            probe_timeout_s=settings.realtime_probe_timeout_s,
            drain_s=settings.realtime_drain_s,
        )
    inference = Inference(
        store, pools, archives, settings.frame_timeout_s, settings.max_actor_deaths_per_frame, realtime=realtime
    )
    cancelled = CancelledBatches()
    register(bus, inference, cancelled, Deployer(realtime, pools), settings.frame_workers)
    rerankers = Rerankers(store, settings.node_models())
    enricher = Enricher(settings.llm(), store)
    api = build_query_api(inference, rerankers, enricher, settings.internal_token)
    server = InternalServer(api, settings.inference_host, settings.inference_port, "inference", metrics=True)
    return InferenceService(
        settings,
        bus,
        store,
        pools,
        inference,
        api=api,
        server=server,
        rerankers=rerankers,
        enricher=enricher,
        cancelled=cancelled,
    )


def _sandbox(settings: InferenceSettings) -> SandboxSettings:
    from featurebus.inference.ray_actors import SandboxSettings

    return SandboxSettings(
        enforce=settings.sandbox == "enforce",
        egress=settings.sandbox_egress,
        egress_ports=tuple(settings.sandbox_egress_ports),
        address_overhead_gb=settings.sandbox_address_overhead_gb,
        frame_cpu_seconds=settings.sandbox_frame_cpu_seconds,
        scratch_gb=settings.sandbox_scratch_gb,
        forbidden=(str(settings.data_dir.resolve()),),
    )


async def _logged(work: Awaitable[None], what: str) -> None:
    try:
        await work
    except Exception:
        log.exception("%s failed", what)


async def _reap_every(reap: Callable[[], Awaitable[None]], period: float) -> None:
    while True:
        await asyncio.sleep(period)
        await _logged(reap(), "shutting down idle actor pools")  # a failed reap must not end the reaping


def check_sandbox(settings: InferenceSettings) -> None:
    """Refuse to start when the kernel cannot sandbox plugins, unless the operator turned it off.

    With ``FEATUREBUS_SANDBOX_SELF_CHECK=workers`` this process checks nothing itself:
    :func:`check_sandbox_on_workers` runs once Ray is up.
    """
    if settings.sandbox == "off":
        log.warning(
            "FEATUREBUS_SANDBOX=off: PLUGIN CODE RUNS UNCONFINED, with the credentials of the Ray workers. "
            "Never do this with plugins you did not write."
        )
        return
    if settings.sandbox_self_check == "workers":
        log.info("FEATUREBUS_SANDBOX_SELF_CHECK=workers: the sandbox is checked on the Ray nodes, once Ray is up")
        return
    from featurebus.inference.sandbox.probe import probe

    probe()  # raises SandboxUnavailable naming the missing feature
    log.info("plugin sandbox: user, pid, net, mount and ipc namespaces, seccomp and resource limits available")


def _probe_here() -> str | None:
    """The sandbox probe on this node: None when it can sandbox, else why not."""
    from featurebus.inference.sandbox.policy import SandboxUnavailable
    from featurebus.inference.sandbox.probe import probe

    try:
        probe()
    except SandboxUnavailable as exc:
        return str(exc)
    return None


def check_sandbox_on_workers(
    settings: InferenceSettings, probe: Callable[[], str | None] = _probe_here, poll_s: float = 2.0
) -> dict[str, str | None]:
    """``FEATUREBUS_SANDBOX_SELF_CHECK=workers``: the probe in a Ray task pinned to each alive node
    offering CPUs (where plugin actors and replicas land; the driver's node offers none on a
    cluster). Waits up to ``sandbox_self_check_timeout_s`` for a first such node. Raises
    SandboxUnavailable naming each node that cannot sandbox (or when none joined); returns
    {node address: None} for the nodes checked. Nodes that join later are not probed here: their
    sandboxes refuse to start where the kernel cannot build them (rows fail plugin_load_failed)."""
    if settings.sandbox == "off" or settings.sandbox_self_check != "workers":
        return {}
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from featurebus.inference.sandbox.policy import SandboxUnavailable

    deadline = time.monotonic() + settings.sandbox_self_check_timeout_s
    while True:
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        if nodes:
            break
        if time.monotonic() > deadline:
            raise SandboxUnavailable(
                f"FEATUREBUS_SANDBOX_SELF_CHECK=workers: no Ray node with CPUs joined within "
                f"{settings.sandbox_self_check_timeout_s:.0f}s, so the plugin sandbox could not be checked; "
                "start the Ray workers (or use FEATUREBUS_SANDBOX_SELF_CHECK=driver)"
            )
        time.sleep(poll_s)
    remote = ray.remote(num_cpus=0, max_retries=0)(probe)
    refs = {
        node["NodeManagerAddress"] + f" ({node['NodeID'][:12]})": remote.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        ).remote()
        for node in nodes
    }
    left = max(1.0, deadline - time.monotonic())
    try:
        answers = dict(zip(refs, ray.get(list(refs.values()), timeout=left), strict=True))
    except ray.exceptions.GetTimeoutError as exc:
        raise SandboxUnavailable(
            f"FEATUREBUS_SANDBOX_SELF_CHECK=workers: the sandbox probe did not answer within {left:.0f}s "
            f"on the Ray nodes {sorted(refs)}"
        ) from exc
    failed = {node: why for node, why in answers.items() if why is not None}
    if failed:
        raise SandboxUnavailable(
            "plugins cannot be sandboxed on Ray node(s) "
            + "; ".join(f"{node}: {why}" for node, why in sorted(failed.items()))
        )
    log.info("plugin sandbox available on the Ray node(s) %s", ", ".join(sorted(answers)))
    return answers


async def _serve(settings: InferenceSettings) -> None:
    # Local Ray workers inherit this process's environment; they never call the internal APIs.
    os.environ.pop("FEATUREBUS_INTERNAL_TOKEN", None)
    check_sandbox(settings)
    start_ray(settings)
    try:
        check_sandbox_on_workers(settings)
        (settings.plugins_dir / "work").mkdir(parents=True, exist_ok=True)
        await run_until_signalled(build(settings))
    finally:
        import ray

        ray.shutdown()


def main() -> None:
    settings = InferenceSettings()
    telemetry.configure("inference", settings)
    asyncio.run(_serve(settings))
