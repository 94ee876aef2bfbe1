"""Real-time deployments and their blue-green rollout (no Kafka, no Ray: a :class:`ServeBackend` runs them).

A deployment is one Serve application running one plugin version's ``realtime.py`` in sandboxed
replicas; its name is chosen by the registry. Deploying:

1. start the new deployment beside the one it replaces (which keeps serving);
2. report IN_PROGRESS with replicas ready/desired while it starts;
3. health-check it: a probe query must come back with a vector of the manifest's dimensions for
   every feature (``realtime.py``'s ``"embedding"`` key, or the feature's own);
4. report DEPLOYED (``replaced`` = the old one): the registry switches traffic; the old deployment
   is stopped ``drain_s`` later, once no caller can still be routed to it.

If the new deployment fails to start, or fails its health check, it is stopped and FAILED is
reported with the reason; the old one is untouched and keeps serving (automatic rollback).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from featurebus.common.events import DeploymentChanged, DeploymentStatus, DeployRequested, PluginRef, ReasonCode
from featurebus.runtime import PluginError

__all__ = ["PROBE_TEXT", "BackendState", "DeploymentMissing", "Realtime", "Report", "ServeBackend"]

log = logging.getLogger("featurebus.inference.rollout")

PROBE_TEXT = "featurebus health check"

Report = Callable[[DeploymentChanged], Awaitable[None]]


class DeploymentMissing(Exception):
    """No deployment of that name runs (it was stopped, or never started)."""


@dataclass(frozen=True)
class BackendState:
    """Where a deployment is: starting, running (healthy), failed (with Serve's message) or missing."""

    phase: Literal["starting", "running", "failed", "missing"]
    replicas_ready: int = 0
    replicas_desired: int = 0
    message: str = ""


class ServeBackend(Protocol):
    """Starts, inspects, calls and stops real-time deployments (Ray Serve in the service)."""

    async def start(self, name: str, plugin: PluginRef, archive: bytes) -> None:
        """Ask for the deployment (returns at once; :meth:`state` follows it)."""

    async def state(self, name: str) -> BackendState: ...

    async def call(self, name: str, method: str, *args: Any, timeout: float) -> Any:
        """``method`` of a replica of ``name``; PluginError for the plugin's own failure."""

    async def delete(self, name: str) -> None: ...


class Realtime:
    """Deploys, undeploys and calls real-time deployments on a :class:`ServeBackend`."""

    def __init__(
        self,
        backend: ServeBackend,
        *,
        start_timeout_s: float = 600.0,
        probe_timeout_s: float = 60.0,
        drain_s: float = 10.0,
        poll_s: float = 0.5,
    ) -> None:
        self.backend = backend
        self.start_timeout_s = start_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.drain_s = drain_s
        self.poll_s = poll_s
        self._retiring: set[asyncio.Task[None]] = set()

    async def deploy(self, request: DeployRequested, archive: bytes, report: Report) -> None:
        """Start ``request.deployment``, check it, and report DEPLOYED or FAILED (see the module doc)."""
        name, plugin = request.deployment, request.plugin
        if name is None or plugin is None:
            raise ValueError("a deploy request needs plugin and deployment")
        await report(_changed(request, "IN_PROGRESS"))
        await self.backend.start(name, plugin, archive)
        state = await self._until_started(request, name, report)
        if state.phase != "running":
            await self.backend.delete(name)
            await report(_changed(request, "FAILED", state, error=_start_failure(state, self.start_timeout_s)))
            return
        try:
            await self.probe(name, plugin)
        except (PluginError, TimeoutError) as exc:
            await self.backend.delete(name)
            await report(_changed(request, "FAILED", state, error=_probe_failure(exc, self.probe_timeout_s)))
            return
        await report(_changed(request, "DEPLOYED", state, replaced=request.replaces))
        if request.replaces and request.replaces != name:
            self._retire_later(request.replaces)

    async def undeploy(self, request: DeployRequested, report: Report) -> None:
        if request.deployment:
            await self.backend.delete(request.deployment)
        await report(_changed(request, "NOT_DEPLOYED"))

    async def probe(self, name: str, plugin: PluginRef) -> None:
        """A probe query through ``name``: a vector of the manifest's dimensions for every feature."""
        vectors = await self.embed(name, PROBE_TEXT, self.probe_timeout_s)
        for feature in plugin.features:
            got = len(vectors.get(feature.feature_name, []))
            if got != feature.embedding_dim:
                raise PluginError(
                    ReasonCode.DIMENSION_MISMATCH,
                    f"{feature.feature_name!r} has {got} dimensions, the manifest says {feature.embedding_dim}",
                )

    async def infer(self, name: str, inputs: dict[str, Any], parameters: dict[str, Any], timeout: float) -> Any:
        """``realtime.py``'s answer to one request, through deployment ``name``."""
        return await self.backend.call(name, "infer", inputs, parameters, timeout=timeout)

    async def embed(self, name: str, text: str, timeout: float) -> dict[str, list[float]]:
        """Every manifest feature's vector for one query text, through deployment ``name``."""
        vectors: dict[str, list[float]] = await self.backend.call(name, "embed", text, timeout=timeout)
        return vectors

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()

    async def _until_started(self, request: DeployRequested, name: str, report: Report) -> BackendState:
        deadline = time.monotonic() + self.start_timeout_s
        last: tuple[int, int] | None = None
        while True:
            state = await self.backend.state(name)
            if state.phase in ("running", "failed"):
                return state
            if (state.replicas_ready, state.replicas_desired) != last:
                last = (state.replicas_ready, state.replicas_desired)
                await report(_changed(request, "IN_PROGRESS", state))
            if time.monotonic() > deadline:
                return BackendState("failed", state.replicas_ready, state.replicas_desired, "timeout")
            await asyncio.sleep(self.poll_s)

    def _retire_later(self, name: str) -> None:
        async def retire() -> None:
            await asyncio.sleep(self.drain_s)
            try:
                await self.backend.delete(name)
                log.info("deployment %s stopped: it was replaced %.0fs ago", name, self.drain_s)
            except Exception:
                log.exception("stopping the replaced deployment %s failed", name)

        task = asyncio.create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


def _probe_failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"health check failed: the probe query took longer than {timeout:.0f}s"
    assert isinstance(exc, PluginError)
    if exc.reason is ReasonCode.PLUGIN_LOAD_FAILED:
        return f"the plugin did not load: {exc.message}"
    return f"health check failed: {exc.message}"


def _start_failure(state: BackendState, timeout: float) -> str:
    if state.message == "timeout":
        return (
            f"its replicas were not ready within {timeout:.0f}s ({state.replicas_ready} of "
            f"{state.replicas_desired} ready): the cluster may lack the CPU, memory or GPU they ask for"
        )
    return state.message or "the deployment failed to start"


def _changed(
    request: DeployRequested,
    status: DeploymentStatus,
    state: BackendState | None = None,
    *,
    error: str | None = None,
    replaced: str | None = None,
) -> DeploymentChanged:
    return DeploymentChanged(
        org_id=request.org_id,
        namespace_id=request.namespace_id,
        plugin_id=request.plugin_id,
        deployment=request.deployment or "",
        status=status,
        replicas_ready=state.replicas_ready if state else 0,
        replicas_desired=state.replicas_desired if state else 0,
        error=error,
        replaced=replaced,
    )
