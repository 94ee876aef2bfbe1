"""What inference does with a frame or a query (no Kafka or HTTP here; Ray is behind :class:`Pools`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from featurebus.common import ids
from featurebus.common.events import (
    BatchReady,
    PluginRef,
    ReasonCode,
    VectorsProduced,
)
from featurebus.common.frames import from_parquet
from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, ObjectStore, sha256_hex
from featurebus.common.queries import EmbedRequest, EmbedResponse, InferRequest, InferResponse, QueryText
from featurebus.inference.plugin_worker import WorkerOutput, all_rows_failed
from featurebus.inference.pools import ActorLost, ArchiveLoader, Pools
from featurebus.inference.rollout import DeploymentMissing, Realtime
from featurebus.runtime import PluginError
from featurebus.runtime.queries import Query

__all__ = ["ArchiveCache", "EmbedFailed", "Inference"]

log = logging.getLogger("featurebus.inference")

# A query whose actor died is tried once more on a fresh one (a frame is retried by Kafka instead).
QUERY_ATTEMPTS = 2


class EmbedFailed(Exception):
    """A query could not be embedded: the message names the plugin and why (the caller shows it)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class Supplier(Protocol):
    """What a plugin's workers are given beside its archive (its models, its secrets), made ready
    before a worker starts."""

    async def prepare(self, plugin: PluginRef) -> None: ...


class ArchiveCache:
    """Plugin archives by checksum: kept on local disk, fetched from the object store (checksum-checked)
    when missing there; checked again whenever they are read, for the disk is not trusted."""

    def __init__(self, store: ObjectStore, directory: Path, suppliers: Sequence[Supplier] = ()) -> None:
        self.store = store
        self.directory = directory
        self.suppliers = tuple(suppliers)
        # Local copies checked since they last changed: checksum -> (size, mtime, inode) then.
        self._checked: dict[str, tuple[int, int, int]] = {}

    async def get(self, plugin: PluginRef) -> bytes:
        """The archive's bytes; PluginError(plugin_load_failed) when it is gone or not what was scanned."""
        return (await self.loader(plugin))()

    async def loader(self, plugin: PluginRef) -> ArchiveLoader:
        """A reader of the archive's checked local copy (fetched now if there is none, or if it
        changed and no longer checks out): what a pool calls only to start an actor. A warm pool's
        frames and queries cost a stat of the file, not a read of it."""
        for supplier in self.suppliers:
            await supplier.prepare(plugin)
        path = self.directory / f"{plugin.archive_sha256}.zip"
        if self._checked.get(plugin.archive_sha256) != _stat_key(path):
            if not (path.exists() and sha256_hex(path.read_bytes()) == plugin.archive_sha256):
                await self._fetch(plugin, path)
            self._checked[plugin.archive_sha256] = _stat_key(path)

        def read() -> bytes:
            data = path.read_bytes() if path.exists() else b""
            if sha256_hex(data) != plugin.archive_sha256:  # it changed since it was checked
                self._checked.pop(plugin.archive_sha256, None)
                path.unlink(missing_ok=True)  # fetched again on the next use
                raise PluginError(
                    ReasonCode.PLUGIN_LOAD_FAILED,
                    f"the local copy of {plugin.plugin_id}'s archive ({path}) is damaged or gone",
                    "retry: it is fetched again from the object store",
                )
            return data

        return read

    async def _fetch(self, plugin: PluginRef, path: Path) -> None:
        try:
            data = await self.store.get_bytes(plugin.archive_uri, plugin.archive_sha256)
        except ChecksumMismatch as exc:
            raise PluginError(
                ReasonCode.PLUGIN_LOAD_FAILED,
                f"the archive of {plugin.plugin_id} is not the one that was scanned: {exc}",
                "upload the plugin again",
            ) from exc
        except ObjectMissing as exc:  # (a store outage is retried or dead-lettered, not the rows failed)
            raise PluginError(
                ReasonCode.PLUGIN_LOAD_FAILED,
                f"the archive of {plugin.plugin_id} is missing from the object store ({plugin.archive_uri})",
                "upload the plugin again",
            ) from exc
        self.directory.mkdir(parents=True, exist_ok=True)
        # A unique name: the batch and the query handler may fetch the same archive at once.
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        tmp.write_bytes(data)
        tmp.replace(path)


def _stat_key(path: Path) -> tuple[int, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, -1, -1)
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class Inference:
    """Frames to vector sets and query texts to vectors, on the plugins' warm pools."""

    def __init__(
        self,
        store: ObjectStore,
        pools: Pools,
        archives: ArchiveCache,
        frame_timeout_s: float,
        max_actor_deaths: int,
        realtime: Realtime | None = None,
    ) -> None:
        self.store = store
        self.pools = pools
        self.realtime = realtime  # queries of plugins deployed for real time go through their deployment
        self.archives = archives
        self.frame_timeout_s = frame_timeout_s
        self.max_actor_deaths = max_actor_deaths
        self._deaths: dict[str, int] = {}

    async def run_frame(self, event: BatchReady) -> VectorsProduced:
        """Run one frame on the plugin's warm pool; every row ends embedded or failed with a reason."""
        frame = await self.store.get_bytes(event.frame_uri, event.frame_sha256)
        try:
            plugin = event.plugin.model_copy(update={"namespace_id": event.namespace_id})
            archive = await self.archives.loader(plugin)
            output = await self.pools.process(plugin, archive, frame, self.frame_timeout_s)
        except ActorLost:
            deaths = self._deaths[event.frame_id] = self._deaths.get(event.frame_id, 0) + 1
            if deaths < self.max_actor_deaths:
                raise
            output = _all_failed(
                frame, ReasonCode.PLUGIN_EXCEPTION, f"the plugin's worker process died {deaths} times on this frame"
            )
        except TimeoutError:
            output = _all_failed(frame, ReasonCode.TIMEOUT, f"the frame took longer than {self.frame_timeout_s:.0f}s")
        except PluginError as err:  # the archive is gone, or the plugin's actors cannot be placed
            log.error(
                "batch=%s frame=%s plugin=%s: %s", event.batch_id, event.frame_id, event.plugin.plugin_id, err.message
            )
            output = _all_failed(frame, err.reason, err.message, err.hint)
        self._deaths.pop(event.frame_id, None)
        vectors_uri = vectors_sha = None
        if output.vectors_parquet is not None:
            vectors_sha = sha256_hex(output.vectors_parquet)
            vectors_uri = await self.store.put_bytes(
                f"vectors/{event.batch_id}/{event.frame_id}.parquet",
                output.vectors_parquet,
                "application/vnd.apache.parquet",
            )
        for failure in output.failures[:3]:
            log.warning(
                "frame=%s document=%s failed: %s: %s",
                event.frame_id,
                failure.document_id,
                failure.reason.value,
                failure.message,
            )
        log.info(
            "batch=%s frame=%s plugin=%s rows_in=%d embedded=%d failed=%d",
            event.batch_id,
            event.frame_id,
            event.plugin.plugin_id,
            output.rows_in,
            output.rows_embedded,
            len(output.failures),
        )
        return VectorsProduced(
            event_id=ids.deterministic_id("evt", event.frame_id, "vectors"),
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            batch_id=event.batch_id,
            frame_id=event.frame_id,
            collection_id=event.collection_id,
            plugin_id=event.plugin.plugin_id,
            features=event.plugin.features,
            vectors_uri=vectors_uri,
            vectors_sha256=vectors_sha,
            rows_in=output.rows_in,
            rows_embedded=output.rows_embedded,
            failures=output.failures,
        )

    async def embed_queries(self, request: EmbedRequest) -> EmbedResponse:
        """One vector per query text, in order: each through its plugin's own steps, on the warm
        pool of the request's namespace (the frames' pool; a query takes an actor's second thread).

        The query path's one way to a vector (the internal embed API calls it); EmbedFailed names
        the first query, in order, that could not be embedded.
        """
        done = await asyncio.gather(*(self._embed(request, q) for q in request.queries), return_exceptions=True)
        vectors: list[list[float]] = []
        for outcome in done:
            if isinstance(outcome, BaseException):
                if isinstance(outcome, EmbedFailed):
                    log.error("request=%s: %s", request.request_id, outcome.message)
                raise outcome
            vectors.append(outcome)
        return EmbedResponse(vectors=vectors)

    async def _embed(self, request: EmbedRequest, query: QueryText) -> list[float]:
        plugin = query.plugin.model_copy(update={"namespace_id": request.namespace_id})
        pid = plugin.plugin_id
        item: Query = query.text if query.blob is None else query.blob.row()
        for attempt in range(1, QUERY_ATTEMPTS + 1):
            try:
                realtime = await self._realtime_vectors(query, item)
                if realtime is not None:
                    vectors = realtime
                else:
                    archive = await self.archives.loader(plugin)
                    vectors = await self.pools.embed(plugin, archive, item, self.frame_timeout_s)
                break
            except ActorLost:  # the pool replaced the dead actor: the next attempt gets a fresh one
                if attempt == QUERY_ATTEMPTS:
                    raise EmbedFailed(
                        f"{pid}'s worker process died {attempt} times while embedding the query",
                        "retry; if it keeps failing, run the plugin's steps on the query with `featurebus plugin test`",
                    ) from None
                log.warning("request=%s: %s's worker died embedding the query, retrying", request.request_id, pid)
            except PluginError as err:
                raise EmbedFailed(f"{pid} could not embed the query: {err.message}", err.hint) from None
            except TimeoutError:
                raise EmbedFailed(f"{pid} took longer than {self.frame_timeout_s:.0f}s to embed the query") from None
        vector = vectors.get(query.feature_name, vectors.get("embedding"))
        if vector is None:
            raise EmbedFailed(f"{pid} produced no vector {query.feature_name!r} (it produced {sorted(vectors)})")
        return vector

    async def _realtime_vectors(self, query: QueryText, item: Query) -> dict[str, list[float]] | None:
        """The query's vectors from its plugin's real-time deployment (realtime.py); None without one."""
        if query.deployment is None or self.realtime is None:
            return None
        try:
            return await self.realtime.embed(query.deployment, item, self.frame_timeout_s)
        except DeploymentMissing:  # replaced or stopped since the registry read it: the batch steps answer
            log.info(
                "deployment %s is gone: the query goes to %s's batch actors", query.deployment, query.plugin.plugin_id
            )
            return None

    async def infer(self, request: InferRequest) -> InferResponse:
        """realtime.py's answer through the deployment; EmbedFailed with the plugin's message, or when it is gone."""
        if self.realtime is None:
            raise EmbedFailed("real-time deployments are not available in this inference process")
        try:
            output = await self.realtime.infer(
                request.deployment, request.inputs, request.parameters, self.frame_timeout_s
            )
        except DeploymentMissing:
            raise EmbedFailed(
                f"the real-time deployment {request.deployment} is not running",
                "it was replaced or stopped (or inference restarted): deploy the plugin again",
            ) from None
        except PluginError as err:
            raise EmbedFailed(f"the plugin failed: {err.message}", err.hint) from None
        except TimeoutError:
            raise EmbedFailed(f"the plugin took longer than {self.frame_timeout_s:.0f}s to answer") from None
        return InferResponse(output=output)


def _all_failed(frame_parquet: bytes, reason: ReasonCode, message: str, hint: str | None = None) -> WorkerOutput:
    frame = from_parquet(frame_parquet)
    return WorkerOutput(None, all_rows_failed(frame, reason, message, hint), len(frame), 0)
