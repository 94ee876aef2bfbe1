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

The deployments that should run are kept in the object store (:class:`DeploymentRecords`: the
request of each, written before DEPLOYED is reported, removed when it is replaced, undeployed or
fails). Serve's deployments live in the Ray cluster: when inference restarts (and with it a local
Ray) or the cluster does, they are gone while the registry still routes queries to them. So
inference restores them: every recorded one that is missing at startup, and any that a query
finds missing; the query waits for it (a query is never answered by another encoder than the one
the registry chose). A restore that fails fails the queries with its reason, and is retried
``restore_retry_s`` later.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from featurebus.common.events import DeploymentChanged, DeploymentStatus, DeployRequested, PluginRef, ReasonCode
from featurebus.common.objectstore import ObjectMissing, ObjectStore
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query

__all__ = [
    "PROBE_TEXT",
    "Archives",
    "BackendState",
    "DeploymentMissing",
    "DeploymentRecords",
    "Realtime",
    "Report",
    "ServeBackend",
]

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


class Archives(Protocol):
    """Plugin archives by checksum (:class:`~featurebus.inference.processing.ArchiveCache` in the service)."""

    async def get(self, plugin: PluginRef) -> bytes:
        """The archive's bytes; PluginError(plugin_load_failed) when it is gone or not what was scanned."""


class DeploymentRecords:
    """The deployments that should run: ``deployments/{name}.json`` in the object store, the request of each."""

    PREFIX = "deployments/"

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def keep(self, request: DeployRequested) -> None:
        await self.store.put_bytes(
            self._key(request.deployment or ""), request.model_dump_json().encode(), "application/json"
        )

    async def forget(self, name: str) -> None:
        await self.store.delete(self._key(name))

    async def get(self, name: str) -> DeployRequested | None:
        try:
            data = await self.store.get_bytes(self.store.uri(self._key(name)))
        except ObjectMissing:
            return None
        try:
            return DeployRequested.model_validate_json(data)
        except ValidationError:  # written by another version, or damaged: not restorable
            log.exception("the record of deployment %s is unreadable; it is not restored", name)
            return None

    async def names(self) -> list[str]:
        keys = await self.store.keys(self.PREFIX)
        return [k.removeprefix(self.PREFIX).removesuffix(".json") for k in keys if k.endswith(".json")]

    def _key(self, name: str) -> str:
        if not name or "/" in name:
            raise ValueError(f"not a deployment name: {name!r}")
        return f"{self.PREFIX}{name}.json"


class Realtime:
    """Deploys, undeploys, restores and calls real-time deployments on a :class:`ServeBackend`."""

    def __init__(
        self,
        backend: ServeBackend,
        records: DeploymentRecords,
        archives: Archives,
        *,
        start_timeout_s: float = 600.0,
        probe_timeout_s: float = 60.0,
        drain_s: float = 10.0,
        poll_s: float = 0.5,
        restore_retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        report: Report | None = None,
    ) -> None:
        """``report``: where restores report their progress (``plugin.deployment`` in the service)."""
        self.backend = backend
        self.records = records
        self.archives = archives
        self.start_timeout_s = start_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.drain_s = drain_s
        self.poll_s = poll_s
        self.restore_retry_s = restore_retry_s
        self.clock = clock
        self.report = report
        self._retiring: set[asyncio.Task[None]] = set()
        self._restoring: dict[str, asyncio.Task[bool]] = {}  # name -> its restore (kept a while when it failed)
        self._restore_failed_at: dict[str, float] = {}

    async def deploy(self, request: DeployRequested, report: Report) -> None:
        """Start ``request.deployment``, check it, and report DEPLOYED or FAILED (see the module doc)."""
        name, plugin = request.deployment, _own(request)
        if name is None or plugin is None:
            raise ValueError("a deploy request needs plugin and deployment")
        try:
            archive = await self.archives.get(plugin)
        except PluginError as err:
            await report(_changed(request, "FAILED", error=err.message))
            return
        await report(_changed(request, "IN_PROGRESS"))
        await self.backend.start(name, plugin, archive)
        state = await self._until_started(request, name, report)
        if state.phase != "running":
            await self.stop(name)
            await report(_changed(request, "FAILED", state, error=_start_failure(state, self.start_timeout_s)))
            return
        try:
            await self.probe(name, plugin)
        except (PluginError, TimeoutError) as exc:
            await self.stop(name)
            await report(_changed(request, "FAILED", state, error=_probe_failure(exc, self.probe_timeout_s)))
            return
        await self.records.keep(request)  # before DEPLOYED: a deployment the registry routes to is restorable
        if request.replaces and request.replaces != name:
            await self.records.forget(request.replaces)
        await report(_changed(request, "DEPLOYED", state, replaced=request.replaces))
        if request.replaces and request.replaces != name:
            self._retire_later(request.replaces)

    async def undeploy(self, request: DeployRequested, report: Report) -> None:
        if request.deployment:
            await self.stop(request.deployment)
        await report(_changed(request, "NOT_DEPLOYED"))

    async def restore_all(self) -> None:
        """Restore every recorded deployment that is not running (at startup); failures are logged."""
        names = await self.records.names()
        missing = [n for n in names if (await self.backend.state(n)).phase in ("missing", "failed")]
        if missing:
            log.info("restoring %d real-time deployments that are not running: %s", len(missing), ", ".join(missing))
        outcomes = await asyncio.gather(*(self._restored(n) for n in missing), return_exceptions=True)
        for name, outcome in zip(missing, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("deployment %s could not be restored: %s", name, outcome)

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
        return await self._call(name, "infer", inputs, parameters, timeout=timeout)

    async def embed(self, name: str, query: Query, timeout: float) -> dict[str, list[float]]:
        """Every manifest feature's vector for one query (a text or a blob), through deployment ``name``."""
        vectors: dict[str, list[float]] = await self._call(name, "embed", query, timeout=timeout)
        return vectors

    async def close(self) -> None:
        for task in [*self._retiring, *self._restoring.values()]:
            task.cancel()

    async def _call(self, name: str, method: str, *args: Any, timeout: float) -> Any:
        """``method`` of ``name``, restoring it first if it should run but does not; DeploymentMissing if it should not."""
        try:
            return await self.backend.call(name, method, *args, timeout=timeout)
        except DeploymentMissing:
            if not await asyncio.wait_for(asyncio.shield(self._restored(name)), timeout):
                raise
        return await self.backend.call(name, method, *args, timeout=timeout)

    def _restored(self, name: str) -> asyncio.Task[bool]:
        """The one restore of ``name`` under way (or recently failed): True once it runs, False if it should not."""
        task = self._restoring.get(name)
        failed = self._restore_failed_at.get(name)
        if task is not None and failed is not None and self.clock() - failed > self.restore_retry_s:
            task = None  # a failure is remembered restore_retry_s, then tried again
        if task is None:
            task = self._restoring[name] = asyncio.create_task(self._restore(name))
            task.add_done_callback(lambda done: self._restore_done(name, done))
        return task

    def _restore_done(self, name: str, task: asyncio.Task[bool]) -> None:
        if task.cancelled() or task.exception() is None:
            if self._restoring.get(name) is task:
                del self._restoring[name]
            self._restore_failed_at.pop(name, None)
        else:  # kept: queries meanwhile get its failure at once
            self._restore_failed_at[name] = self.clock()

    async def _restore(self, name: str) -> bool:
        request = await self.records.get(name)
        if request is None or request.plugin is None:
            return False
        phase = (await self.backend.state(name)).phase
        if phase == "running":
            return True
        try:
            if phase != "starting":
                log.warning("deployment %s of %s should run but does not: starting it again", name, request.plugin_id)
                await self._report(_changed(request, "IN_PROGRESS"))
                if phase == "failed":
                    await self.backend.delete(name)
                plugin = _own(request)
                assert plugin is not None
                await self.backend.start(name, plugin, await self.archives.get(plugin))
            state = await self._until_started(request, name, self._report)
        except PluginError as err:  # its archive is gone from the object store, or the like
            why = err.message
        else:
            why = "" if state.phase == "running" else _start_failure(state, self.start_timeout_s)
        if why:
            failure = _not_restored(name, why)
            await self._report(_changed(request, "FAILED", error=failure.message))
            raise failure
        log.info("deployment %s restored (%d of %d replicas ready)", name, state.replicas_ready, state.replicas_desired)
        await self._report(_changed(request, "DEPLOYED", state))
        return True

    async def _report(self, changed: DeploymentChanged) -> None:
        if self.report is not None:
            try:
                await self.report(changed)
            except Exception:  # the status lags; the restore itself goes on
                log.exception("reporting %s of deployment %s failed", changed.status, changed.deployment)

    async def stop(self, name: str) -> None:
        """Stop ``name`` for good (it is not restored)."""
        await self.records.forget(name)
        await self.backend.delete(name)

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


def _not_restored(name: str, why: str) -> PluginError:
    return PluginError(
        ReasonCode.PLUGIN_LOAD_FAILED,
        f"the real-time deployment {name} stopped (inference or Ray restarted) and could not be started again: {why}",
        "see the inference log; deploy the plugin again once the cause is fixed",
    )


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


def _own(request: DeployRequested) -> PluginRef | None:
    """The request's plugin, running for the request's namespace (its namespace's models)."""
    if request.plugin is None:
        return None
    return request.plugin.model_copy(update={"namespace_id": request.namespace_id})


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
