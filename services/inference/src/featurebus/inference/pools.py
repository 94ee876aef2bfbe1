"""Warm actor pools: one per plugin version (plugin id + archive checksum + parameters).

Each actor is a :class:`~featurebus.inference.plugin_worker.PluginWorker` that loaded the plugin once.
This module keeps the books — which actor takes a call, when a pool grows, when an actor is
replaced, when an idle pool goes — and knows nothing of Ray: an :class:`ActorBackend`
(:mod:`featurebus.inference.ray_actors` in the service, a fake in unit tests) starts, calls and
kills the actors.

- Frames go to an idle actor; when all are busy a new one starts, up to
  ``compute_profile.max_concurrency`` and while the cluster has room for it; beyond that the
  frame waits for an actor to be free (an actor runs one frame at a time; its second thread is
  kept for queries).
- Queries go to the least busy *existing* actor (its model is warm; the actor runs two calls at
  once), and start one only when the pool is empty. A pool has at most one query call in flight
  per actor; the queries that arrive meanwhile go together in the next call, as one frame
  (:mod:`featurebus.inference.coalescing`): one model call for all of them.
- An actor that died is removed and :class:`ActorLost` raised (a TransientError: the message is
  retried and a fresh actor starts). An actor that timed out is killed likewise.
- An actor whose plugin failed to load keeps answering "load failed" at once for
  ``load_failure_retry_s``; then it is replaced, so a fixed dependency is picked up.
- A pool unused for ``idle_seconds`` is shut down (:meth:`WarmPools.reap_idle`). Before then, when
  a new actor would not fit in the cluster, the least recently used idle pool of another plugin
  is shut down to make room, so warm pools never starve a plugin that has work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from featurebus.common.events import PluginRef, ReasonCode
from featurebus.common.kafka import TransientError
from featurebus.inference.coalescing import Coalescer
from featurebus.inference.plugin_worker import Embedded, WorkerOutput
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query

__all__ = ["ActorBackend", "ActorLost", "ArchiveLoader", "Pools", "ResourcesUnavailable", "WarmPools"]

# The plugin's archive, read (and checked) only when an actor must start: a warm pool's frames
# and queries never touch it (an archive may bundle hundreds of MB of weights).
ArchiveLoader = Callable[[], bytes]

log = logging.getLogger("featurebus.inference.pools")

# Failures a worker started afresh may not have: the plugin's load failed, or it names a model
# that the model registry got since this worker started (a new worker is shipped it). The worker
# answers them until load_failure_retry_s has passed, then is replaced.
_FRESH_WORKER_MAY_FIX = (ReasonCode.PLUGIN_LOAD_FAILED, ReasonCode.MODEL_NOT_AVAILABLE)


class ActorLost(TransientError):
    """The actor running a call died; the message is retried on a fresh actor."""


class ResourcesUnavailable(PluginError):
    """No actor of this plugin can be scheduled (e.g. it asks for a GPU the cluster lacks)."""

    def __init__(self, message: str) -> None:
        super().__init__(ReasonCode.PLUGIN_LOAD_FAILED, message)


class Pools(Protocol):
    """What the inference logic needs from the pools."""

    async def process(
        self, plugin: PluginRef, archive: ArchiveLoader, frame: bytes, timeout: float
    ) -> WorkerOutput: ...
    async def embed(
        self, plugin: PluginRef, archive: ArchiveLoader, query: Query, timeout: float
    ) -> dict[str, list[float]]: ...
    async def stats(self, plugin: PluginRef) -> list[dict[str, Any]]: ...
    async def make_room(self, plugin: PluginRef) -> bool: ...
    async def drop(self, namespace_id: str, plugin_id: str) -> int: ...
    async def warm(self, plugin: PluginRef, archive: ArchiveLoader) -> dict[str, Any] | None: ...
    async def reap_idle(self) -> None:
        """Stop the actors of pools unused for longer than their idle time."""
        ...


class ActorBackend(Protocol):
    """Starts, calls and kills PluginWorker actors."""

    def check(self, plugin: PluginRef) -> None:
        """Raise ResourcesUnavailable when no actor of ``plugin`` could ever be scheduled."""

    def has_room(self, plugin: PluginRef) -> bool:
        """Whether the cluster has the free resources to start one more actor of ``plugin`` now."""

    def spawn(self, plugin: PluginRef, archive: bytes) -> Any:
        """Start an actor running ``PluginWorker(plugin_id, archive, parameters, work_dir)``."""

    async def call(self, actor: Any, method: str, *args: Any) -> Any:
        """Call a PluginWorker method on ``actor``; raise ActorLost if the actor died."""

    def kill(self, actor: Any) -> None: ...


@dataclass(eq=False)
class _Actor:
    handle: Any
    in_flight: int = 0
    load_failed_at: float | None = None


@dataclass
class _Pool:
    actors: list[_Actor] = field(default_factory=list)
    last_used: float = 0.0


class WarmPools:
    """The :class:`Pools` of the service: warm actors per plugin version, on an :class:`ActorBackend`."""

    def __init__(
        self,
        backend: ActorBackend,
        idle_seconds: float,
        load_failure_retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.idle_seconds = idle_seconds
        self.load_failure_retry_s = load_failure_retry_s
        self.clock = clock
        self._pools: dict[tuple[str, str, str, str], _Pool] = {}
        self._lock = asyncio.Lock()
        self._freed = asyncio.Condition(self._lock)  # notified when an actor finishes or goes
        self._queries: Coalescer[Query, Embedded] = Coalescer()

    async def process(self, plugin: PluginRef, archive: ArchiveLoader, frame: bytes, timeout: float) -> WorkerOutput:
        output: WorkerOutput = await self._call(plugin, archive, "process", frame, timeout, grow=True)
        return output

    async def embed(
        self, plugin: PluginRef, archive: ArchiveLoader, query: Query, timeout: float
    ) -> dict[str, list[float]]:
        """One query's vectors (a text or a blob); PluginError when the plugin could not embed it."""

        async def run(queries: list[Query]) -> list[Embedded]:
            answers: list[Embedded] = await self._call(plugin, archive, "embed", queries, timeout, grow=False)
            return answers

        slots = max(1, self.size(plugin))
        answer = await self._queries.submit(_key(plugin), query, run, slots, plugin.compute_profile.batch_size)
        if isinstance(answer, PluginError):
            raise answer
        return answer

    async def warm(self, plugin: PluginRef, archive: ArchiveLoader) -> dict[str, Any] | None:
        """Start the plugin's first actor unless its pool has one, and wait until it has loaded (its
        environment installed, its models laid out, the plugin loaded): that actor's stats, or None
        when the pool was warm already."""
        async with self._freed:
            pool = self._pools.setdefault(_key(plugin), _Pool(last_used=self.clock()))
            if pool.actors:
                return None
            self._make_room(plugin)  # as for a frame: idle pools of other plugins make way
            actor = self._start(plugin, archive, pool)
        stats: dict[str, Any] = await self.backend.call(actor.handle, "stats")
        if stats.get("load_error"):
            self._load_failed(plugin, actor, str(stats["load_error"]))
        return stats

    async def stats(self, plugin: PluginRef) -> list[dict[str, Any]]:
        pool = self._pools.get(_key(plugin))
        return [await self.backend.call(a.handle, "stats") for a in pool.actors] if pool else []

    def size(self, plugin: PluginRef) -> int:
        """How many actors the plugin's pool has now."""
        pool = self._pools.get(_key(plugin))
        return len(pool.actors) if pool else 0

    async def reap_idle(self) -> None:
        """Shut down pools unused for longer than ``idle_seconds`` (called periodically)."""
        now = self.clock()
        async with self._lock:
            idle = [
                key
                for key, pool in self._pools.items()
                if not any(a.in_flight for a in pool.actors) and now - pool.last_used > self.idle_seconds
            ]
            gone = [(key, self._pools.pop(key)) for key in idle]
        for key, pool in gone:
            for actor in pool.actors:
                self.backend.kill(actor.handle)
            log.info("pool %s@%s shut down after %.0fs idle", key[0], key[1][:12], self.idle_seconds)

    async def make_room(self, plugin: PluginRef) -> bool:
        """Shut down idle pools of other plugin versions until one more actor of ``plugin`` fits.

        Called before a real-time deployment starts (its replicas need the same room): idle warm
        pools must not keep it unscheduled. Whether it fits now."""
        async with self._lock:
            return self._make_room(plugin)

    async def drop(self, namespace_id: str, plugin_id: str) -> int:
        """Shut down every pool of ``plugin_id`` in the namespace (undeployed); how many actors went.

        Frames running on them fail over to fresh actors, as when an actor dies."""
        async with self._lock:
            keys = [key for key in self._pools if key[:2] == (namespace_id, plugin_id)]
            gone = [self._pools.pop(key) for key in keys]
            self._freed.notify_all()
        actors = [actor for pool in gone for actor in pool.actors]
        for actor in actors:
            self.backend.kill(actor.handle)
        if actors:
            log.info("pools of %s in %s shut down (undeployed): %d actors", plugin_id, namespace_id, len(actors))
        return len(actors)

    async def close(self) -> None:
        """Kill every actor of every pool."""
        async with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            for actor in pool.actors:
                self.backend.kill(actor.handle)

    # --------------------------------------------------------------------------------- internals

    async def _call(
        self, plugin: PluginRef, archive: ArchiveLoader, method: str, arg: Any, timeout: float, grow: bool
    ) -> Any:
        pool, actor = await self._acquire(plugin, archive, grow)
        try:
            result = await asyncio.wait_for(self.backend.call(actor.handle, method, arg), timeout)
        except ActorLost:
            await self._retire(plugin, actor, "died")
            raise
        except TimeoutError:
            await self._retire(plugin, actor, f"took longer than {timeout:.0f}s")
            raise
        except PluginError as err:
            if err.reason in _FRESH_WORKER_MAY_FIX:
                self._load_failed(plugin, actor, err.message)
            raise
        finally:
            async with self._freed:
                actor.in_flight -= 1
                pool.last_used = self.clock()
                self._freed.notify_all()
        if isinstance(result, WorkerOutput):
            unfit = result.load_failed or any(f.reason is ReasonCode.MODEL_NOT_AVAILABLE for f in result.failures)
            if unfit:
                self._load_failed(plugin, actor, result.failures[0].message if result.failures else "")
        return result

    async def _acquire(self, plugin: PluginRef, archive: ArchiveLoader, grow: bool) -> tuple[_Pool, _Actor]:
        async with self._freed:
            while True:
                now = self.clock()
                pool = self._pools.setdefault(_key(plugin), _Pool(last_used=now))
                for stale in [a for a in pool.actors if self._load_failure_expired(a, now)]:
                    pool.actors.remove(stale)
                    self.backend.kill(stale.handle)
                    log.info("pool %s: retrying the load of a plugin that failed to load", plugin.plugin_id)
                idle = [a for a in pool.actors if a.in_flight == 0]
                if pool.actors and (idle or not grow):  # a query takes the least busy warm actor
                    actor = idle[0] if idle else min(pool.actors, key=lambda a: a.in_flight)
                    break
                # A busy pool grows only while the cluster has room, else the frame waits for one of
                # its actors; an empty pool starts one regardless (Ray runs it once resources free).
                room = len(pool.actors) < plugin.compute_profile.max_concurrency and self._make_room(plugin)
                if room or not pool.actors:
                    actor = self._start(plugin, archive, pool)
                    break
                await self._freed.wait()  # every actor runs a frame and the pool cannot grow now
            actor.in_flight += 1
            pool.last_used = now
            return pool, actor

    def _start(self, plugin: PluginRef, archive: ArchiveLoader, pool: _Pool) -> _Actor:
        self.backend.check(plugin)
        actor = _Actor(self.backend.spawn(plugin, archive()))
        pool.actors.append(actor)
        log.info(
            "pool %s@%s: started actor %d of at most %d",
            plugin.plugin_id,
            plugin.archive_sha256[:12],
            len(pool.actors),
            plugin.compute_profile.max_concurrency,
        )
        return actor

    def _make_room(self, plugin: PluginRef) -> bool:
        """Whether one more actor of ``plugin`` fits, shutting idle pools of other plugins if need be."""
        while not self.backend.has_room(plugin):
            if not self._evict_idle_pool(plugin):
                return False
        return True

    def _evict_idle_pool(self, plugin: PluginRef) -> bool:
        """Shut down the least recently used idle pool of another plugin version (lock held); False if none."""
        wanted = _key(plugin)
        idle = [
            (pool.last_used, key)
            for key, pool in self._pools.items()
            if key != wanted and pool.actors and not any(a.in_flight for a in pool.actors)
        ]
        if not idle:
            return False
        _, key = min(idle)
        pool = self._pools.pop(key)
        for actor in pool.actors:
            self.backend.kill(actor.handle)
        log.info("pool %s@%s shut down early (idle) to make room for %s", key[0], key[1][:12], plugin.plugin_id)
        return True

    def _load_failure_expired(self, actor: _Actor, now: float) -> bool:
        failed = actor.load_failed_at
        return failed is not None and actor.in_flight == 0 and now - failed > self.load_failure_retry_s

    def _load_failed(self, plugin: PluginRef, actor: _Actor, message: str) -> None:
        if actor.load_failed_at is None:
            actor.load_failed_at = self.clock()
            log.error(
                "plugin %s cannot run on this worker (it fails every row so for the next %.0fs, then is replaced): %s",
                plugin.plugin_id,
                self.load_failure_retry_s,
                message,
            )

    async def _retire(self, plugin: PluginRef, actor: _Actor, why: str) -> None:
        async with self._freed:
            pool = self._pools.get(_key(plugin))
            if pool and actor in pool.actors:
                pool.actors.remove(actor)
            self._freed.notify_all()
        self.backend.kill(actor.handle)
        log.warning("pool %s: an actor %s; it is replaced on demand", plugin.plugin_id, why)


def _key(plugin: PluginRef) -> tuple[str, str, str, str]:
    # A namespace never shares a worker process with another (each has its own sandbox).
    # Parameters are part of a plugin's identity here: build_steps reads them once, at load time,
    # so two collections that configure one plugin version differently need different actors.
    parameters = json.dumps(plugin.parameters, sort_keys=True, default=str)
    return (
        plugin.namespace_id,
        plugin.plugin_id,
        plugin.archive_sha256,
        hashlib.sha256(parameters.encode()).hexdigest()[:12],
    )
