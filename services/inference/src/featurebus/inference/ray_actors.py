"""The Ray adapter: PluginWorker actors on the Ray cluster this process is connected to.

The only module of the service that imports Ray (besides Ray's start-up in ``main``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from featurebus.common.events import PluginRef
from featurebus.inference.access_supply import AccessSupply, PluginAccess
from featurebus.inference.model_cache import ModelShipment, NodeModels, install_models
from featurebus.inference.model_shipping import ModelShipper
from featurebus.inference.placement import DEFAULT_GPU_MEMORY_GB, actor_options, placement_problem
from featurebus.inference.plugin_access import LLMGateway
from featurebus.inference.plugin_envs import PluginEnvironments, entered, node_environment
from featurebus.inference.plugin_worker import Embedded, PluginWorker, WorkerOutput
from featurebus.inference.pool_metrics import ObservedActors
from featurebus.inference.pools import ActorLost, ResourcesUnavailable, WarmPools
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query
from featurebus.sdk.container import PlatformLLM, PluginContainer, Secrets
from featurebus.sdk.model_loading import NAMESPACE_MODELS_ENV

__all__ = [
    "Held",
    "PluginActor",
    "RayActors",
    "RayPools",
    "SandboxSettings",
    "asks",
    "cluster_shape",
    "live_nodes",
    "node_models",
]

# Ray resources this process holds, by holder (an actor's id, a real-time deployment's name).
Held = dict[int | str, dict[str, float]]

log = logging.getLogger("featurebus.inference.ray_actors")

_ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)


class PluginActor:
    """One plugin worker as Ray runs it: the plugin in its sandbox (or, with the sandbox turned off
    by the operator, in this process). Its stats also name the Ray node it runs on."""

    def __init__(
        self,
        plugin_id: str,
        archive: bytes,
        parameters: dict[str, Any] | None,
        work_dir: str,
        models: NodeModels | None,
        sandbox: SandboxConfig | None,
        shipments: list[ModelShipment] | None = None,
        namespace_id: str = "",
        access: PluginAccess | None = None,
        environments: PluginEnvironments | None = None,
        environment: tuple[str, ...] = (),
    ) -> None:
        """``environment``: the pins of the plugin's own environment, installed on this node first."""
        self.worker: SandboxedWorker | PluginWorker
        site = node_environment(environments, environment, plugin_id)
        if isinstance(site, PluginError):  # no plugin code runs: every row fails environment_failed
            self.worker = PluginWorker(plugin_id, site, parameters)
            return
        models_dir, sandbox = node_models(models, shipments or [], namespace_id, entered(site, sandbox))
        if sandbox is None:
            log.warning("SANDBOX OFF: plugin %s runs unconfined, with this worker's credentials", plugin_id)
            container = unconfined_container(access)
            self.worker = PluginWorker.from_archive(plugin_id, archive, parameters, work_dir, models_dir, container)
        else:
            self.worker = SandboxedWorker(plugin_id, archive, parameters, work_dir, models_dir, sandbox, access=access)

    def process(self, frame_parquet: bytes) -> WorkerOutput:
        return self.worker.process(frame_parquet)

    def embed(self, queries: list[Query]) -> list[Embedded]:
        return self.worker.embed(queries)

    def stats(self) -> dict[str, Any]:
        return {**self.worker.stats(), "node_id": ray.get_runtime_context().get_node_id()}


class RayActors:
    """An :class:`~featurebus.inference.pools.ActorBackend` of Ray actors.

    ``work_dir`` and the ``models`` directories are paths the actors make on whichever node they
    run on; the archive and the models the plugin names (``shipper``) travel to them through Ray,
    so the service and the Ray nodes share no disk.
    """

    def __init__(
        self,
        work_dir: Path,
        actor_num_cpus: float,
        models: NodeModels | None = None,
        gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB,
        sandbox: SandboxSettings | None = None,
        held: Held | None = None,
        shipper: ModelShipper | None = None,
        access: AccessSupply | None = None,
        environments: PluginEnvironments | None = None,
    ) -> None:
        self.sandbox = sandbox if sandbox is not None else SandboxSettings()
        self.access = access
        self.environments = environments
        self.work_dir = work_dir
        self.actor_num_cpus = actor_num_cpus
        self.models = models
        self.shipper = shipper
        self.gpu_memory_gb = gpu_memory_gb
        self._worker_class = ray.remote(PluginActor)
        # What the actors this process started and has not killed asked for (and, shared with the
        # real-time deployments, what their replicas hold): Ray's own view of free resources lags
        # behind actors just started, and trusting it starts actors that then wait unscheduled
        # while frames queue on them.
        self._held: Held = held if held is not None else {}

    def check(self, plugin: PluginRef) -> None:
        problem = placement_problem(
            plugin.plugin_id, plugin.compute_profile, self.actor_num_cpus, live_nodes(), self.gpu_memory_gb
        )
        if problem:
            raise ResourcesUnavailable(problem)

    def has_room(self, plugin: PluginRef) -> bool:
        """Whether the cluster's resources, less those of this process's live actors, fit one more.

        Actors of other drivers sharing the cluster are not counted: an actor started beside them
        waits until Ray can place it (a frame on it fails with ``timeout`` at worst).
        """
        total = ray.cluster_resources()
        wanted = asks(self._options(plugin))
        return all(
            total.get(key, 0.0) - sum(held.get(key, 0.0) for held in self._held.values()) >= amount
            for key, amount in wanted.items()
        )

    def _options(self, plugin: PluginRef) -> dict[str, Any]:
        node_cpus, gpus = cluster_shape()
        return actor_options(plugin.compute_profile, self.actor_num_cpus, node_cpus, self.gpu_memory_gb, gpus)

    def spawn(self, plugin: PluginRef, archive: bytes) -> Any:
        options = self._options(plugin)
        actor = self._worker_class.options(**options).remote(
            plugin.plugin_id,
            archive,
            plugin.parameters,
            str(self.work_dir),
            self.models,
            self.sandbox.for_plugin(plugin),
            self.shipper.shipments(plugin) if self.shipper else [],
            plugin.namespace_id,
            self.access.access(plugin) if self.access else None,
            self.environments,
            tuple(plugin.environment),
        )
        self._held[id(actor)] = asks(options)
        return actor

    async def call(self, actor: Any, method: str, *args: Any) -> Any:
        try:
            return await getattr(actor, method).remote(*args)
        except _ACTOR_LOST as exc:
            raise ActorLost(f"a worker process of the plugin died: {exc}") from exc
        except RayTaskError as exc:
            # Hand the plugin's own error on as itself, not wrapped in Ray's traceback text.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, PluginError):
                raise PluginError(cause.reason, cause.message, cause.hint) from None
            raise

    def kill(self, actor: Any) -> None:
        self._held.pop(id(actor), None)
        ray.kill(actor, no_restart=True)


class RayPools(WarmPools):
    """Warm pools of Ray actors (``ray.init`` must have run)."""

    def __init__(
        self,
        work_dir: Path,
        actor_num_cpus: float,
        idle_seconds: float,
        load_failure_retry_s: float = 60.0,
        models: NodeModels | None = None,
        gpu_memory_gb: float = DEFAULT_GPU_MEMORY_GB,
        sandbox: SandboxSettings | None = None,
        held: Held | None = None,
        shipper: ModelShipper | None = None,
        access: AccessSupply | None = None,
        environments: PluginEnvironments | None = None,
    ) -> None:
        actors = RayActors(
            work_dir, actor_num_cpus, models, gpu_memory_gb, sandbox, held, shipper, access, environments
        )
        super().__init__(ObservedActors(actors), idle_seconds, load_failure_retry_s)


@dataclass(frozen=True)
class SandboxSettings:
    """The operator's sandbox settings (see InferenceSettings); ``enforce=False`` turns it off."""

    enforce: bool = True
    egress: bool = False
    egress_ports: tuple[int, ...] = (443, 80)
    address_overhead_gb: float = 4.0
    frame_cpu_seconds: float = 300.0
    scratch_gb: float = 1.0
    forbidden: tuple[str, ...] = ()

    def for_plugin(self, plugin: PluginRef) -> SandboxConfig | None:
        """This plugin's sandbox: its memory from compute_profile, egress only for "api" plugins (or
        plugins with a step of ResourceType.API)."""
        if not self.enforce:
            return None
        profile = plugin.compute_profile
        return SandboxConfig(
            memory_bytes=int((profile.actor_memory_gb + self.address_overhead_gb) * 1024**3),
            frame_cpu_seconds=self.frame_cpu_seconds,
            scratch_bytes=int(self.scratch_gb * 1024**3),
            egress=self.egress and profile.uses_api,
            egress_ports=self.egress_ports,
            forbidden=self.forbidden,
        )


def node_models(
    models: NodeModels | None, shipments: list[ModelShipment], namespace_id: str, sandbox: SandboxConfig | None
) -> tuple[str | None, SandboxConfig | None]:
    """On the worker's node, before the plugin starts: the models it was shipped installed; the
    Hugging Face home it loads from, and its sandbox with its namespace's models (an unsandboxed
    plugin finds them through the environment)."""
    if models is None:
        return None, sandbox
    own = install_models(models, shipments, ray.get, namespace_id)
    if own is not None:
        if sandbox is not None:
            sandbox = dataclasses.replace(sandbox, namespace_models=str(own))
        else:
            os.environ[NAMESPACE_MODELS_ENV] = str(own)
    return str(models.hf_home), sandbox


def unconfined_container(access: PluginAccess | None) -> PluginContainer | None:
    """``container`` for a plugin run without the sandbox: the same secrets and LLM, in process."""
    if access is None:
        return None
    llm = PlatformLLM(LLMGateway(access.llm).call) if access.llm is not None else None
    return PluginContainer(llm=llm, secrets=Secrets(access.secrets, access.namespace_id, access.plugin_id))


def asks(options: dict[str, Any]) -> dict[str, float]:
    """The Ray resources that actor ``options`` reserve."""
    return {"CPU": options["num_cpus"], "memory": options["memory"], "GPU": options.get("num_gpus", 0)}


def cluster_shape() -> tuple[float, bool]:
    """The CPUs of the cluster's largest node, and whether any node has a GPU."""
    nodes = live_nodes()
    return max((n.get("CPU", 0.0) for n in nodes), default=1.0), any(n.get("GPU", 0.0) >= 1 for n in nodes)


def live_nodes() -> list[dict[str, float]]:
    """The total resources of each live node of the cluster."""
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]
