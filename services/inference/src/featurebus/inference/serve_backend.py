"""The Ray Serve adapter of :mod:`featurebus.inference.rollout`: one Serve application per deployment.

Each replica is a :class:`RealtimeReplica`: the plugin's ``realtime.py`` in the same sandbox as
batch code (a confined child process; the replica holds what the child must not see). Replicas
autoscale between the compute profile's ``min_replicas`` and ``max_replicas``, aiming at
``target_ongoing_requests`` per replica, each with the CPU, memory and GPU share a batch actor of
the plugin gets. Serve's HTTP proxy is not started: callers reach a deployment through a handle
(the inference service's query API), under the registry's authentication.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from ray import cloudpickle, serve
from ray.serve.exceptions import RayServeException

from featurebus.common.events import PluginRef, ReasonCode
from featurebus.inference.model_cache import ModelShipment, NodeModels
from featurebus.inference.model_shipping import ModelShipper
from featurebus.inference.placement import DEFAULT_GPU_MEMORY_GB, actor_options
from featurebus.inference.plugin_envs import PluginEnvironments, entered, node_environment
from featurebus.inference.plugin_worker import RealtimeWorker, prepare_plugin
from featurebus.inference.ray_actors import Held, SandboxSettings, asks, cluster_shape, node_models
from featurebus.inference.rollout import BackendState, DeploymentMissing
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query

__all__ = ["RayServeBackend", "RealtimeReplica", "start_serve"]

log = logging.getLogger("featurebus.inference.serve")

_QUIET = {"enable_access_log": False, "log_level": "WARNING"}  # an access log line costs a query ~1 ms
MAX_CONSTRUCTOR_RETRIES = 2
_REPLICA_OPTIONS = (
    "num_cpus",
    "num_gpus",
    "memory",
    "resources",
    "accelerator_type",
    "runtime_env",
)  # a replica that cannot start fails the deployment quickly


def start_serve() -> None:
    """Serve's controller on the connected Ray cluster, without its HTTP proxy."""
    _count_pickle_by_value()
    serve.start(proxy_location="Disabled", logging_config=_QUIET)


def _count_pickle_by_value() -> None:
    """Make Ray's cloudpickle by-value registrations nest, so that Serve may build configs on two
    threads at once.

    Each config Serve builds registers its request router's module with cloudpickle's process-wide
    by-value set, pickles, and unregisters it (ray/serve/config.py). Unguarded, two at once (a
    deployment built for a restore beside one for a deploy, or beside a handle's config update on
    Serve's own thread) end with the second unregister failing: "... is not registered for pickle
    by value", and the deployment failing with it. Counted under a lock, a module stays registered
    until its last user unregisters it. Idempotent."""
    if getattr(cloudpickle, "_featurebus_counted", False):
        return
    register, unregister = cloudpickle.register_pickle_by_value, cloudpickle.unregister_pickle_by_value
    lock = threading.Lock()
    users: Counter[str] = Counter()

    def counted_register(module: Any) -> None:
        with lock:
            if not users[module.__name__]:
                register(module)
            users[module.__name__] += 1

    def counted_unregister(module: Any) -> None:
        with lock:
            if users[module.__name__] > 1:
                users[module.__name__] -= 1
                return
            users.pop(module.__name__, None)
            unregister(module)

    cloudpickle.register_pickle_by_value = counted_register
    cloudpickle.unregister_pickle_by_value = counted_unregister
    setattr(cloudpickle, "_featurebus_counted", True)  # noqa: B010  (a module attribute of our own)


class RealtimeReplica:
    """One replica of a real-time deployment: the plugin's ``InferenceService``, loaded once.

    Never raises from ``__init__`` (Serve would retry it): a load error is kept and every call
    answers it, so the rollout's health check reports the plugin's own message.
    """

    def __init__(
        self,
        plugin_id: str,
        archive: bytes,
        parameters: dict[str, Any],
        work_dir: str,
        models: NodeModels | None,
        sandbox: SandboxConfig | None,
        shipments: list[ModelShipment] | None = None,
        namespace_id: str = "",
        environments: PluginEnvironments | None = None,
        environment: tuple[str, ...] = (),
    ) -> None:
        self.worker: SandboxedWorker | RealtimeWorker
        site = node_environment(environments, environment, plugin_id)
        if isinstance(site, PluginError):  # the health check reports it; no plugin code runs
            self.worker = RealtimeWorker(plugin_id, site, parameters)
            return
        models_dir, sandbox = node_models(models, shipments or [], namespace_id, entered(site, sandbox))
        if sandbox is None:
            log.warning("SANDBOX OFF: plugin %s's realtime.py runs unconfined", plugin_id)
            self.worker = RealtimeWorker(
                plugin_id, prepare_plugin(plugin_id, archive, work_dir, models_dir), parameters
            )
        else:
            self.worker = SandboxedWorker(plugin_id, archive, parameters, work_dir, models_dir, sandbox, realtime=True)

    async def infer(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        return await _enveloped(self.worker.infer, inputs, parameters)

    async def embed(self, query: Query) -> dict[str, Any]:
        return await _enveloped(self._embed, query)

    def _embed(self, query: Query) -> dict[str, list[float]]:
        [answer] = self.worker.embed([query])
        if isinstance(answer, PluginError):
            raise answer
        return answer

    def __del__(self) -> None:
        close = getattr(self.worker, "close", None)
        if callable(close):
            close()


async def _enveloped(call: Any, *args: Any) -> dict[str, Any]:
    """The call's result as ``{"ok": ...}``, a plugin error as ``{"error": ...}`` (not a Ray traceback)."""
    try:
        return {"ok": await asyncio.to_thread(call, *args)}
    except PluginError as err:
        return {"error": {"reason": str(err.reason), "message": err.message, "hint": err.hint}}


class RayServeBackend:
    """A :class:`~featurebus.inference.rollout.ServeBackend` on Ray Serve (``start_serve`` must have run)."""

    def __init__(
        self,
        work_dir: Path,
        replica_num_cpus: float,
        models: NodeModels | None = None,
        gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB,
        sandbox: SandboxSettings | None = None,
        held: Held | None = None,
        shipper: ModelShipper | None = None,
        environments: PluginEnvironments | None = None,
    ) -> None:
        """``held`` is shared with the batch actors (:class:`~featurebus.inference.ray_actors.RayActors`):
        the minimum replicas of every deployment count against the room batch pools see."""
        self.work_dir = work_dir
        self.replica_num_cpus = replica_num_cpus
        self.models = models
        self.shipper = shipper
        self.gpu_memory_gb = gpu_memory_gb
        self.sandbox = sandbox if sandbox is not None else SandboxSettings()
        self.environments = environments
        self._starting: dict[str, asyncio.Task[Any]] = {}
        self._handles: dict[str, Any] = {}
        self._held: Held = held if held is not None else {}

    async def start(self, name: str, plugin: PluginRef, archive: bytes) -> None:
        deployment, options = self._deployment(plugin)
        replica = asks(options)
        self._held[name] = {k: v * plugin.compute_profile.min_replicas for k, v in replica.items()}
        app = deployment.bind(
            plugin.plugin_id,
            archive,
            plugin.parameters,
            str(self.work_dir),
            self.models,
            self.sandbox.for_plugin(plugin),
            self.shipper.shipments(plugin) if self.shipper else [],
            plugin.namespace_id,
            self.environments,
            tuple(plugin.environment),
        )
        # serve.run returns once the application runs (or raises when it cannot): in a thread,
        # while state() follows its replicas.
        self._starting[name] = asyncio.create_task(
            asyncio.to_thread(serve.run, app, name=name, route_prefix=None, logging_config=_QUIET)
        )

    async def state(self, name: str) -> BackendState:
        starting = self._starting.get(name)
        if starting is not None and starting.done():
            self._starting.pop(name, None)
            if starting.exception() is not None:
                return BackendState("failed", message=_serve_message(starting.exception()))
        status = await asyncio.to_thread(serve.status)
        app = status.applications.get(name)
        if app is None:
            return BackendState("starting" if starting is not None else "missing")
        ready = desired = 0
        for deployment in app.deployments.values():
            states = {str(getattr(state, "value", state)): count for state, count in deployment.replica_states.items()}
            ready += states.get("RUNNING", 0)
            desired += max(1, sum(states.values()))
        phase = {"RUNNING": "running", "DEPLOY_FAILED": "failed", "UNHEALTHY": "failed"}.get(str(app.status.value))
        if phase == "running" and starting is not None:
            phase = None  # serve.run has not returned yet
        return BackendState(phase or "starting", ready, desired, app.message)  # type: ignore[arg-type]

    async def call(self, name: str, method: str, *args: Any, timeout: float) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            try:
                handle = self._handles[name] = serve.get_app_handle(name)
            except RayServeException as exc:
                raise DeploymentMissing(name) from exc
        answer = await asyncio.wait_for(getattr(handle, method).remote(*args), timeout)
        if "error" in answer:
            error = answer["error"]
            raise PluginError(ReasonCode(error["reason"]), error["message"], error.get("hint"))
        return answer["ok"]

    async def delete(self, name: str) -> None:
        self._handles.pop(name, None)
        self._held.pop(name, None)
        starting = self._starting.pop(name, None)
        if starting is not None:
            starting.cancel()
        await asyncio.to_thread(serve.delete, name)

    def _deployment(self, plugin: PluginRef) -> tuple[Any, dict[str, Any]]:
        """The Serve deployment of ``plugin``'s replicas, and the Ray options of one replica."""
        profile = plugin.compute_profile
        node_cpus, gpus = cluster_shape()
        actor = actor_options(profile, self.replica_num_cpus, node_cpus, self.gpu_memory_gb, gpus)
        options = {k: v for k, v in actor.items() if k in _REPLICA_OPTIONS}  # Serve takes only these
        most = profile.max_replicas or max(profile.min_replicas, profile.max_concurrency)
        deployment = serve.deployment(
            RealtimeReplica,
            name="realtime",
            ray_actor_options=options,
            autoscaling_config={
                "min_replicas": profile.min_replicas,
                "initial_replicas": profile.min_replicas,
                "max_replicas": max(most, profile.min_replicas),
                "target_ongoing_requests": profile.target_ongoing_requests,
            },
            max_ongoing_requests=max(4, int(profile.target_ongoing_requests * 4)),
            max_constructor_retry_count=MAX_CONSTRUCTOR_RETRIES,
            logging_config=_QUIET,
        )
        return deployment, options


def _serve_message(exc: BaseException | None) -> str:
    text = str(exc or "the deployment failed")
    return text.strip().splitlines()[-1][:2000] if text.strip() else "the deployment failed"
