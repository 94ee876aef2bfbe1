"""What inference does with a frame or a query (no Kafka here; Ray is behind :class:`Pools`)."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from featurebus.common import ids
from featurebus.common.events import (
    BatchReady,
    PluginRef,
    ReasonCode,
    RetrievalAnswered,
    RetrievalEmbedded,
    RetrievalRequested,
    VectorsProduced,
)
from featurebus.common.frames import from_parquet
from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, ObjectStore, sha256_hex
from featurebus.inference.plugin_worker import WorkerOutput, all_rows_failed
from featurebus.inference.pools import ActorLost, Pools
from featurebus.runtime import PluginError

__all__ = ["ArchiveCache", "Inference"]

log = logging.getLogger("featurebus.inference")


class ArchiveCache:
    """Plugin archives by checksum: from local disk, else from the object store (checksum-checked)."""

    def __init__(self, store: ObjectStore, directory: Path) -> None:
        self.store = store
        self.directory = directory

    async def get(self, plugin: PluginRef) -> bytes:
        """The archive's bytes; PluginError(plugin_load_failed) when it is gone or not what was scanned."""
        path = self.directory / f"{plugin.archive_sha256}.zip"
        if path.exists():
            data = path.read_bytes()
            if sha256_hex(data) == plugin.archive_sha256:  # checked on every use: the disk is not trusted
                return data
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
        return data


class Inference:
    """Frames to vector sets and query texts to vectors, on the plugins' warm pools."""

    def __init__(
        self, store: ObjectStore, pools: Pools, archives: ArchiveCache, frame_timeout_s: float, max_actor_deaths: int
    ) -> None:
        self.store = store
        self.pools = pools
        self.archives = archives
        self.frame_timeout_s = frame_timeout_s
        self.max_actor_deaths = max_actor_deaths
        self._deaths: dict[str, int] = {}

    async def run_frame(self, event: BatchReady) -> VectorsProduced:
        """Run one frame on the plugin's warm pool; every row ends embedded or failed with a reason."""
        frame = await self.store.get_bytes(event.frame_uri, event.frame_sha256)
        try:
            plugin = event.plugin.model_copy(update={"namespace_id": event.namespace_id})
            archive = await self.archives.get(plugin)
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

    async def embed_queries(self, event: RetrievalRequested) -> RetrievalEmbedded | RetrievalAnswered:
        """Each search's query text through its plugin's own steps, in the same warm pool."""
        searches = []
        for search in event.searches:
            try:
                plugin = search.plugin.model_copy(update={"namespace_id": event.namespace_id})
                archive = await self.archives.get(plugin)
                vectors = await self.pools.embed(plugin, archive, search.query_text, self.frame_timeout_s)
            except PluginError as err:
                return _answer_error(
                    event, f"{search.plugin.plugin_id} could not embed the query: {getattr(err, 'message', err)}"
                )
            except TimeoutError:
                return _answer_error(event, f"{search.plugin.plugin_id} took longer than {self.frame_timeout_s:.0f}s")
            vector = vectors.get(search.feature_name, vectors.get("embedding"))
            if vector is None:
                return _answer_error(
                    event,
                    f"{search.plugin.plugin_id} produced no vector {search.feature_name!r} (it produced {sorted(vectors)})",
                )
            searches.append(search.model_copy(update={"vector": vector}))
        return RetrievalEmbedded(**event.model_dump(exclude={"event_id", "occurred_at", "searches"}), searches=searches)


def _answer_error(event: RetrievalRequested, message: str) -> RetrievalAnswered:
    log.error("request=%s: %s", event.request_id, message)
    return RetrievalAnswered(request_id=event.request_id, error=message)


def _all_failed(frame_parquet: bytes, reason: ReasonCode, message: str, hint: str | None = None) -> WorkerOutput:
    frame = from_parquet(frame_parquet)
    return WorkerOutput(None, all_rows_failed(frame, reason, message, hint), len(frame), 0)
