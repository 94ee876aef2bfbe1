"""Warm Ray actor pools: one per plugin version (plugin id + archive checksum).

Each actor is a :class:`PluginWorker` that loaded the plugin once; frames and queries of that
version go to its pool, up to ``compute_profile.max_concurrency`` actors, created as load needs
them and shut down when the pool has been idle for ``actor_idle_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from featurebus.common.events import PluginRef
from featurebus.common.kafka import TransientError
from featurebus.inference.worker import PluginWorker, WorkerOutput

__all__ = ["ActorLost", "Pools", "RayPools"]

log = logging.getLogger("featurebus.inference.pools")

ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)


class ActorLost(TransientError):
    """The actor running a frame died; the frame is retried on a fresh actor."""


class Pools(Protocol):
    async def process(self, plugin: PluginRef, archive: bytes, frame: bytes, timeout: float) -> WorkerOutput: ...
    async def embed(self, plugin: PluginRef, archive: bytes, text: str, timeout: float) -> dict[str, list[float]]: ...
    async def stats(self, plugin: PluginRef) -> list[dict[str, Any]]: ...


@dataclass
class _Pool:
    actors: list[Any] = field(default_factory=list)
    busy: dict[int, int] = field(default_factory=dict)  # index → calls in flight
    last_used: float = field(default_factory=time.monotonic)


class RayPools:
    """Actor pools on the Ray cluster this process is connected to."""

    def __init__(self, work_dir: Path, actor_num_cpus: float, idle_seconds: float) -> None:
        self.work_dir = work_dir
        self.actor_num_cpus = actor_num_cpus
        self.idle_seconds = idle_seconds
        self._pools: dict[tuple[str, str], _Pool] = {}
        self._lock = asyncio.Lock()

    def _options(self, plugin: PluginRef) -> dict[str, Any]:
        profile = plugin.compute_profile
        options: dict[str, Any] = {
            "num_cpus": self.actor_num_cpus,
            "max_concurrency": 2,  # a query can be embedded while a frame runs
            "memory": int(profile.actor_memory_gb * 2**30),
        }
        if profile.resource_type == "gpu":
            if not ray.cluster_resources().get("GPU"):
                raise RuntimeError(
                    f"plugin {plugin.plugin_id} asks for a GPU (compute_profile.resource_type='gpu') but this "
                    "Ray cluster has none: set resource_type to 'cpu' or add GPU nodes"
                )
            options["num_gpus"] = 1
        return options

    async def _acquire(self, plugin: PluginRef, archive: bytes) -> tuple[_Pool, int]:
        key = (plugin.plugin_id, plugin.archive_sha256)
        async with self._lock:
            pool = self._pools.setdefault(key, _Pool())
            pool.last_used = time.monotonic()
            idle = [i for i in range(len(pool.actors)) if pool.busy.get(i, 0) == 0]
            if not idle and len(pool.actors) < plugin.compute_profile.max_concurrency:
                actor_class = ray.remote(PluginWorker).options(**self._options(plugin))
                pool.actors.append(actor_class.remote(plugin.plugin_id, archive, plugin.parameters, str(self.work_dir)))
                log.info("pool %s@%s: started actor %d", plugin.plugin_id, plugin.archive_sha256[:12], len(pool.actors))
                idle = [len(pool.actors) - 1]
            index = idle[0] if idle else min(range(len(pool.actors)), key=lambda i: pool.busy.get(i, 0))
            pool.busy[index] = pool.busy.get(index, 0) + 1
            return pool, index

    async def _call(self, plugin: PluginRef, archive: bytes, method: str, arg: Any, timeout: float) -> Any:
        pool, index = await self._acquire(plugin, archive)
        actor = pool.actors[index]
        try:
            return await asyncio.wait_for(getattr(actor, method).remote(arg), timeout)
        except ACTOR_LOST as exc:
            await self._drop(plugin, actor)
            raise ActorLost(f"actor of {plugin.plugin_id} died: {exc}") from exc
        except TimeoutError:
            await self._drop(plugin, actor)
            raise
        finally:
            pool.busy[index] = max(0, pool.busy.get(index, 1) - 1)
            pool.last_used = time.monotonic()

    async def _drop(self, plugin: PluginRef, actor: Any) -> None:
        async with self._lock:
            pool = self._pools.pop((plugin.plugin_id, plugin.archive_sha256), None)
        if pool:
            for a in pool.actors:
                ray.kill(a, no_restart=True)
            log.warning("pool %s dropped (actor lost or hung); a new one starts on demand", plugin.plugin_id)

    async def process(self, plugin: PluginRef, archive: bytes, frame: bytes, timeout: float) -> WorkerOutput:
        output: WorkerOutput = await self._call(plugin, archive, "process", frame, timeout)
        return output

    async def embed(self, plugin: PluginRef, archive: bytes, text: str, timeout: float) -> dict[str, list[float]]:
        vectors: dict[str, list[float]] = await self._call(plugin, archive, "embed", text, timeout)
        return vectors

    async def stats(self, plugin: PluginRef) -> list[dict[str, Any]]:
        pool = self._pools.get((plugin.plugin_id, plugin.archive_sha256))
        return [await a.stats.remote() for a in pool.actors] if pool else []

    async def reap_idle(self) -> None:
        """Shut down pools idle for longer than ``idle_seconds`` (called periodically)."""
        now = time.monotonic()
        async with self._lock:
            idle = [
                k for k, p in self._pools.items() if not any(p.busy.values()) and now - p.last_used > self.idle_seconds
            ]
            pools = [self._pools.pop(k) for k in idle]
        for key, pool in zip(idle, pools, strict=True):
            for actor in pool.actors:
                ray.kill(actor, no_restart=True)
            log.info("pool %s@%s shut down after %.0fs idle", key[0], key[1][:12], self.idle_seconds)
