"""Prometheus series of the warm actor pools, observed from outside :class:`~featurebus.inference.pools.WarmPools`.

:class:`ObservedActors` wraps the pools' :class:`~featurebus.inference.pools.ActorBackend` and
counts what the pools ask of it: actors started and alive, pools with an actor, and each frame
or query call as ``cold`` (the actor's first: it waited for the plugin to load) or ``warm``.
Labels carry no plugin ids (tenant data, and unbounded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from featurebus.common.events import PluginRef
from featurebus.inference.pools import ActorBackend

__all__ = ["ACTORS", "ACTOR_CALLS", "ACTOR_STARTS", "POOLS", "ObservedActors"]

ACTOR_STARTS = Counter("featurebus_inference_actor_starts", "Plugin actors started (each one a cold start).")
ACTOR_CALLS = Counter(
    "featurebus_inference_actor_calls",
    "Frames (process) and query batches (embed) sent to plugin actors; start=cold for an actor's first call.",
    ["method", "start"],
)
ACTORS = Gauge("featurebus_inference_pool_actors", "Plugin actors alive in the warm pools.")
POOLS = Gauge("featurebus_inference_pools", "Warm pools (plugin versions of a namespace) with at least one actor.")

_COUNTED = ("process", "embed")


@dataclass
class _Live:
    handle: Any
    pool: tuple[str, str, str]
    called: bool = False


class ObservedActors:
    """An :class:`ActorBackend` that forwards to ``backend`` and keeps the pool series."""

    def __init__(self, backend: ActorBackend) -> None:
        self.backend = backend
        self._live: dict[int, _Live] = {}  # by id() of the handle (held here, so the id stays unique)
        ACTORS.set_function(lambda: len(self._live))
        POOLS.set_function(lambda: len({live.pool for live in self._live.values()}))

    def check(self, plugin: PluginRef) -> None:
        self.backend.check(plugin)

    def has_room(self, plugin: PluginRef) -> bool:
        return self.backend.has_room(plugin)

    def spawn(self, plugin: PluginRef, archive: bytes) -> Any:
        handle = self.backend.spawn(plugin, archive)
        self._live[id(handle)] = _Live(handle, (plugin.namespace_id, plugin.plugin_id, plugin.archive_sha256))
        ACTOR_STARTS.inc()
        return handle

    async def call(self, actor: Any, method: str, *args: Any) -> Any:
        if method in _COUNTED:
            live = self._live.get(id(actor))
            ACTOR_CALLS.labels(method, "warm" if live is None or live.called else "cold").inc()
            if live is not None:
                live.called = True
        return await self.backend.call(actor, method, *args)

    def kill(self, actor: Any) -> None:
        self._live.pop(id(actor), None)
        self.backend.kill(actor)
