"""The models a plugin names, fetched from the object store once for the whole cluster.

The scanner lists the models a plugin's code names (``PluginRef.models``, ``namespace_models``);
before the plugin's first worker starts, this finds those the model registry holds (their
manifests in the object store, :mod:`featurebus.common.model_store`), reads each blob once,
checks it, and hands it to the cluster (``put``: ``ray.put`` in the service) so that the nodes
that start workers pull it from there — never from the object store, for which workers hold no
credentials. A cluster model the registry does not hold is asked for (:class:`RegistryModels`):
where the operator lets the registry fetch models from a hub, the first ask starts the one
download of the whole installation and the plugin's first worker waits for it; otherwise the name
is left out, and the plugin fails ``model_not_available`` when it loads it, naming the import command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from featurebus.common.events import PluginRef, ReasonCode
from featurebus.common.internal_api import bearer
from featurebus.common.kafka import TransientError
from featurebus.common.model_store import ModelManifest, blob_key, manifest_key
from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, ObjectStore
from featurebus.common.queries import MODEL_FETCH_PATH, ModelFetchRequest, ModelFetchResponse
from featurebus.common.telemetry import inject_trace
from featurebus.inference.model_cache import ModelShipment
from featurebus.runtime import PluginError

__all__ = ["ModelShipper", "RegistryModels", "read_manifest"]

log = logging.getLogger("featurebus.inference.models")


class RegistryModels:
    """The registry's answer on a cluster model it lacks (``POST /internal/v1/models/fetch``)."""

    def __init__(self, registry_url: str, token: SecretStr | None, timeout_s: float = 10.0) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    async def fetch(self, name: str) -> ModelFetchResponse:
        """TransientError while the registry cannot answer (the frame is retried, not failed)."""
        body = ModelFetchRequest(name=name).model_dump_json()
        headers = {**bearer(self.token), "Content-Type": "application/json", **inject_trace()}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(f"{self.registry_url}{MODEL_FETCH_PATH}", content=body, headers=headers)
            response.raise_for_status()
            return ModelFetchResponse.model_validate_json(response.content)
        except (httpx.HTTPError, ValidationError) as exc:
            raise TransientError(
                f"the registry's internal API (FEATUREBUS_REGISTRY_INTERNAL_URL) did not say whether model {name} "
                f"can be fetched: {type(exc).__name__}: {exc}"
            ) from exc


class ModelShipper:
    def __init__(
        self,
        store: ObjectStore,
        put: Callable[[bytes], Any],
        refresh_s: float = 30.0,
        max_held_bytes: int = 8 * 1024**3,
        clock: Callable[[], float] = time.monotonic,
        registry: RegistryModels | None = None,
        fetch_wait_s: float = 300.0,
        poll_s: float = 2.0,
    ) -> None:
        """``registry``: asked for the cluster models it lacks; a plugin's first worker waits up to
        ``fetch_wait_s`` for a download the registry runs."""
        self.store = store
        self.put = put
        self.refresh_s = refresh_s
        self.max_held_bytes = max_held_bytes
        self.clock = clock
        self.registry = registry
        self.fetch_wait_s = fetch_wait_s
        self.poll_s = poll_s
        self._refused: dict[str, float] = {}  # cluster model -> when the registry last could not fetch it
        # (scope, name) -> (when read, manifest or None when the registry lacks it)
        self._manifests: dict[tuple[str | None, str], tuple[float, ModelManifest | None]] = {}
        # (scope, sha256) -> (handle, bytes), least recently used first
        self._held: OrderedDict[tuple[str | None, str], tuple[Any, int]] = OrderedDict()

    async def prepare(self, plugin: PluginRef) -> None:
        """Make :meth:`shipments` current for ``plugin``: cheap when nothing changed (no I/O
        within ``refresh_s`` of the last look)."""
        for scope, name in _wanted(plugin):
            manifest = await self._manifest(scope, name)
            if manifest is None and scope is None and self._may_ask(name):
                manifest = await self._fetched(name)
            if manifest is not None:
                await self._hold(manifest)

    def _may_ask(self, name: str) -> bool:
        refused = self._refused.get(name)
        return self.registry is not None and (refused is None or self.clock() - refused >= self.refresh_s)

    async def _fetched(self, name: str) -> ModelManifest | None:
        """A cluster model the registry lacked, once the registry fetched it from the hub (None when
        it does not, or not within ``fetch_wait_s``: the plugin then fails model_not_available)."""
        assert self.registry is not None
        deadline = self.clock() + self.fetch_wait_s
        while True:
            answer = await self.registry.fetch(name)
            if answer.status == "ready":
                self._manifests.pop((None, name), None)
                return await self._manifest(None, name)
            if answer.status != "fetching":
                self._refused[name] = self.clock()  # asked again after refresh_s, not at every frame
                if answer.status == "failed":
                    log.warning("model %s: the registry could not fetch it from the hub: %s", name, answer.error)
                return None
            if self.clock() >= deadline:
                log.warning(
                    "model %s: still downloading after %.0f s; its plugin fails until it is there",
                    name,
                    self.fetch_wait_s,
                )
                return None
            await asyncio.sleep(self.poll_s)

    def shipments(self, plugin: PluginRef) -> list[ModelShipment]:
        """What a worker of ``plugin`` installs before it starts (after :meth:`prepare`)."""
        found = []
        for scope, name in _wanted(plugin):
            manifest = self._manifests.get((scope, name), (0.0, None))[1]
            if manifest is None:
                continue
            blobs = {f.sha256: self._held.get((scope, f.sha256), (None, 0))[0] for f in manifest.files}
            if all(handle is not None for handle in blobs.values()):
                found.append(ModelShipment(manifest, blobs))
        return found

    async def _manifest(self, scope: str | None, name: str) -> ModelManifest | None:
        now = self.clock()
        seen = self._manifests.get((scope, name))
        if seen is not None and now - seen[0] < self.refresh_s:
            return seen[1]
        manifest = await read_manifest(self.store, scope, name)
        self._manifests[(scope, name)] = (now, manifest)
        return manifest

    async def _hold(self, manifest: ModelManifest) -> None:
        scope = manifest.namespace_id
        for f in manifest.files:
            key = (scope, f.sha256)
            if key in self._held:
                self._held.move_to_end(key)
                continue
            try:
                data = await self.store.get_bytes(self.store.uri(blob_key(scope, f.sha256)), f.sha256)
            except (ChecksumMismatch, ObjectMissing) as exc:
                raise PluginError(
                    ReasonCode.PLUGIN_LOAD_FAILED,
                    f"model {manifest.name}: its file {f.path} is damaged or gone in the object store ({exc})",
                    "import the model again (featurebus models import / upload)",
                ) from exc
            self._held[key] = (await asyncio.to_thread(self.put, data), len(data))
        log.debug("model %s@%s ready to ship", manifest.name, manifest.revision[:12])
        self._release(keep={(scope, f.sha256) for f in manifest.files})

    def _release(self, keep: set[tuple[str | None, str]]) -> None:
        """Drop the least recently used blobs beyond ``max_held_bytes`` (fetched again if needed)."""
        total = sum(size for _, size in self._held.values())
        for key in list(self._held):
            if total <= self.max_held_bytes:
                return
            if key not in keep:
                total -= self._held.pop(key)[1]


async def read_manifest(store: ObjectStore, scope: str | None, name: str) -> ModelManifest | None:
    """The registry's manifest of model ``name`` of ``scope`` (None: the cluster's), None when it has none."""
    try:
        raw = await store.get_bytes(store.uri(manifest_key(scope, name)))
    except ObjectMissing:
        return None
    return ModelManifest.model_validate(json.loads(raw))


def _wanted(plugin: PluginRef) -> list[tuple[str | None, str]]:
    wanted: list[tuple[str | None, str]] = [(None, name) for name in plugin.models]
    if plugin.namespace_id:
        wanted += [(plugin.namespace_id, name) for name in plugin.namespace_models]
    return wanted
