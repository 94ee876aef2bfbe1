"""The plugin worker: loads one plugin version once and runs frames and queries through it.

A plain class (unit-testable without Ray); :mod:`featurebus.inference.ray_actors` runs it as a
Ray actor, so plugin code never runs inside the service process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.common.frames import from_parquet, to_parquet
from featurebus.runtime import PluginError, PluginHost, unpack_archive
from featurebus.runtime.queries import Query
from featurebus.runtime.realtime import RealtimeHost
from featurebus.sdk.container import PluginContainer
from featurebus.sdk.model_loading import seed_offline_models

__all__ = ["Embedded", "PluginWorker", "RealtimeWorker", "WorkerOutput", "all_rows_failed", "prepare_plugin"]

log = logging.getLogger("featurebus.inference.plugin_worker")

T = TypeVar("T")
# A call with at most this many inputs runs torch on one thread (of the calling thread's own: torch
# keeps the count per thread, so a frame on another thread keeps the profile's). For few inputs
# the threads only wait for each other: one query of all-MiniLM-L6-v2 took 11.5 ms on one thread
# against 17.5 ms on two (their idle waits sleep, OMP_WAIT_POLICY=PASSIVE) on this 2-core machine,
# at half the CPU; from about 8 texts two threads are faster (16 texts: 55 ms against 75).
FEW_INPUTS = 4
# One query's vectors (every manifest feature's), or why the plugin could not embed it.
Embedded = dict[str, list[float]] | PluginError


@dataclass
class WorkerOutput:
    """One frame's result: the vector-set Parquet (None when no row embedded) and every failed row."""

    vectors_parquet: bytes | None
    failures: list[RowFailure] = field(default_factory=list)
    rows_in: int = 0
    rows_embedded: int = 0
    # The plugin never loaded in this worker: the pool replaces the worker after a short while.
    load_failed: bool = False


class PluginWorker:
    """A warm plugin: ``__init__`` loads it once; ``process`` runs frames, ``embed`` one query text.

    A load error is kept (not raised) and reported for every row the worker is given, so a frame
    of a broken plugin still reconciles: every row failed with ``plugin_load_failed``.

    In the service it runs inside the plugin's sandbox (:mod:`featurebus.inference.sandbox`),
    which prepares ``plugin_dir`` with :func:`prepare_plugin`; :meth:`from_archive` loads a plugin
    in the calling process, for tests and for operators who turned the sandbox off.
    """

    def __init__(
        self,
        plugin_id: str,
        plugin_dir: Path | PluginError,
        parameters: dict[str, Any] | None,
        memory_limit_bytes: int | None = None,
        container: PluginContainer | None = None,
    ) -> None:
        """Load the plugin unpacked at ``plugin_dir`` (or keep the error that prevented unpacking);
        ``container`` is what its ``build_steps`` gets (the plugin's secrets and LLM)."""
        self.plugin_id = plugin_id
        self.load_error: PluginError | None = None
        self.host: PluginHost | None = None
        self.plugin_dir: Path | None = None
        self.frames = 0
        self.queries = 0
        started = time.perf_counter()
        if isinstance(plugin_dir, PluginError):
            self.load_error = plugin_dir
        else:
            self.plugin_dir = plugin_dir
            try:
                self.host = PluginHost.load(
                    plugin_dir,
                    plugin_id=plugin_id,
                    parameters=parameters,
                    container=container,
                    memory_limit_bytes=memory_limit_bytes,
                )
            except PluginError as err:
                self.load_error = err
            except Exception as exc:  # a bug of the host, not a lost batch: still this plugin's load failure
                self.load_error = PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"{type(exc).__name__}: {exc}")
        self.load_seconds = time.perf_counter() - started
        # Plugins load their models lazily on the first call (the guide's _ensure_model_loaded), and
        # that is not thread-safe: the first call runs alone, later ones may overlap (a query
        # embedded while a frame runs).
        self._first_call = threading.Lock()
        self._warm = False

    @classmethod
    def from_archive(
        cls,
        plugin_id: str,
        archive: bytes,
        parameters: dict[str, Any] | None,
        work_dir: str,
        models_dir: str | None = None,
        container: PluginContainer | None = None,
    ) -> PluginWorker:
        """Unpack ``archive`` under ``work_dir`` and load it in this process (no sandbox)."""
        prepared = prepare_plugin(plugin_id, archive, work_dir, models_dir)
        return cls(plugin_id, prepared, parameters, container=container)

    def process(self, frame_parquet: bytes) -> WorkerOutput:
        """Run one frame (the guide's DataFrame columns, as Parquet); every row embedded or failed."""
        frame = from_parquet(frame_parquet)
        self.frames += 1
        if self.host is None:
            err = self._load_error()
            return WorkerOutput(None, all_rows_failed(frame, err.reason, err.message, err.hint), len(frame), 0, True)
        host = self.host
        try:
            result = self._once_warm(lambda: host.run(frame))
        except Exception as exc:  # the host accounts for plugin errors; this is a bug, not a lost batch
            failures = all_rows_failed(frame, ReasonCode.PLUGIN_EXCEPTION, f"{type(exc).__name__}: {exc}")
            return WorkerOutput(None, failures, len(frame), 0)
        data = to_parquet(result.vectors) if result.rows_embedded else None
        return WorkerOutput(data, result.failures, result.rows_in, result.rows_embedded)

    def embed(self, queries: list[Query]) -> list[Embedded]:
        """Each query's vectors (a text or a blob), in one run of the plugin's steps; raises
        PluginError when the plugin is not loaded (then no query can be embedded)."""
        self.queries += len(queries)
        if self.host is None:
            raise self._load_error()
        host = self.host
        with math_threads_for(len(queries)):
            return self._once_warm(lambda: host.embed_queries(queries))

    def stats(self) -> dict[str, Any]:
        """What this worker has done, for tests, logs and benchmarks."""
        return {
            "plugin_id": self.plugin_id,
            "model_loads": self.host.model_loads if self.host else 0,
            "frames": self.frames,
            "queries": self.queries,
            "load_seconds": self.load_seconds,
            "load_error": self.load_error.message if self.load_error else None,
            "pid": os.getpid(),
            "plugin_dir": str(self.plugin_dir) if self.plugin_dir else None,
        }

    def _load_error(self) -> PluginError:
        return self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"plugin {self.plugin_id} is not loaded")

    def _once_warm(self, call: Callable[[], T]) -> T:
        if self._warm:
            return call()
        with self._first_call:
            try:
                return call()
            finally:
                self._warm = True


class RealtimeWorker:
    """A plugin's ``realtime.py`` loaded once: ``infer`` answers requests, ``embed`` query texts.

    The deployment's ``parameters`` are the defaults of every request's. Like
    :class:`PluginWorker`, a load error is kept and raised by every call.
    """

    def __init__(
        self,
        plugin_id: str,
        plugin_dir: Path | PluginError,
        parameters: dict[str, Any] | None,
        memory_limit_bytes: int | None = None,
    ) -> None:
        self.plugin_id = plugin_id
        self.parameters = dict(parameters or {})
        self.load_error: PluginError | None = None
        self.host: RealtimeHost | None = None
        self.requests = 0
        started = time.perf_counter()
        if isinstance(plugin_dir, PluginError):
            self.load_error = plugin_dir
        else:
            try:
                self.host = RealtimeHost.load(plugin_dir, plugin_id=plugin_id, memory_limit_bytes=memory_limit_bytes)
            except PluginError as err:
                self.load_error = err
            except Exception as exc:  # a bug of the host: still this plugin's load failure
                self.load_error = PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"{type(exc).__name__}: {exc}")
        self.load_seconds = time.perf_counter() - started

    def infer(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        self.requests += 1
        return self._host().infer(inputs, {**self.parameters, **parameters})

    def embed(self, queries: list[Query]) -> list[Embedded]:
        """Each query's vectors: ``realtime.py`` answers one request per query."""
        host = self._host()
        self.requests += len(queries)
        answers: list[Embedded] = []
        with math_threads_for(1):  # one request per query
            for query in queries:
                try:
                    answers.append(host.embed_query(query, self.parameters))
                except PluginError as err:
                    answers.append(err)
        return answers

    def stats(self) -> dict[str, Any]:
        return {
            "plugin_id": self.plugin_id,
            "model_loads": 1 if self.host else 0,
            "requests": self.requests,
            "load_seconds": self.load_seconds,
            "load_error": self.load_error.message if self.load_error else None,
            "pid": os.getpid(),
        }

    def _host(self) -> RealtimeHost:
        if self.host is None:
            raise self.load_error or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"{self.plugin_id} is not loaded")
        return self.host


def prepare_plugin(plugin_id: str, archive: bytes, work_dir: str, models_dir: str | None = None) -> Path | PluginError:
    """The archive unpacked in a fresh directory under ``work_dir`` (the model cache seeded), or
    the error that prevented it: kept, so that every row given to the plugin reports it."""
    try:
        if models_dir is not None:
            _seed_models(Path(models_dir))
        target = Path(tempfile.mkdtemp(prefix=f"{plugin_id}-", dir=_usable_dir(Path(work_dir))))
        return unpack_archive(archive, target)
    except PluginError as err:
        return err
    except Exception as exc:  # a corrupt zip, a full disk: still this plugin's load failure
        return PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"{type(exc).__name__}: {exc}")


def _usable_dir(work_dir: Path) -> Path:
    """``work_dir``, made if need be; the system's temp dir when it cannot be made on this machine."""
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        return work_dir
    except OSError as exc:  # a Ray node without the service's path (read-only, not ours)
        fallback = Path(tempfile.gettempdir()) / "featurebus-plugins"
        log.warning("cannot use %s on this node (%s); unpacking plugins under %s", work_dir, exc, fallback)
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


def _seed_models(models_dir: Path) -> None:
    """The packaged model weights, laid out under ``models_dir`` on this machine (idempotent).

    Not a load failure when it cannot be done: a plugin that needs no model still runs, and one
    that does fails with ``ModelNotAvailable``, which names the cache it looked in.
    """
    # Actors starting together on a fresh node seed the same cache: one may find a link the other
    # just made; another pass skips what exists and completes the rest.
    for _ in range(3):
        try:
            seed_offline_models(models_dir)
            return
        except FileExistsError:
            continue
        except OSError as exc:
            log.warning("cannot seed the offline model cache %s on this node: %s", models_dir, exc)
            return


def all_rows_failed(frame: pd.DataFrame, reason: ReasonCode, message: str, hint: str | None = None) -> list[RowFailure]:
    """One failure per row of ``frame``, all for the same reason (so that counts still reconcile)."""
    rows = zip(frame["document_id"].astype(str), frame["object_id"].astype(str), strict=True)
    return RowFailure.every(rows, reason, message, hint)


@contextlib.contextmanager
def math_threads_for(inputs: int) -> Iterator[None]:
    """Run the block on one torch thread when it has at most FEW_INPUTS ``inputs``."""
    torch: Any = sys.modules.get("torch")  # imported by the plugin, if it uses torch at all
    threads = torch.get_num_threads() if torch is not None and inputs <= FEW_INPUTS else 1
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
