"""The plugin host: load a plugin once, run frames through its steps, account for every row.

Used inside inference's Ray actors (never in a service process) and by local plugin tests. What
the guide says fails silently fails loudly here: every row that does not produce a valid vector
for every manifest feature comes back as a :class:`RowFailure` with a reason code and, where the
guide names the mistake, a hint.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import math
import sys
import traceback
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from featurebus.common.events import FeatureSpec, ReasonCode, RowFailure
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.sdk.aliases import install_aliases
from featurebus.sdk.container import PluginContainer
from featurebus.sdk.pipeline import PipelineStep, RowCondition
from featurebus.sdk.request import ExtractorConfig, ExtractorRequest
from featurebus.sdk.rows import RowError
from featurebus.sdk.violations import SandboxViolation

__all__ = ["HostResult", "PluginError", "PluginHost", "RowError", "unpack_archive"]

DATA_HINT = (
    "custom plugins always read batch['data'], not a column named after the blob property: "
    "for text blobs 'data' holds the raw string, for binary blobs an s3:// URL"
)
ROWS_HINT = "return the whole batch with the same number of rows; see the guide's 'Processing only batch.iloc[0]'"


class PluginError(Exception):
    """The plugin could not be loaded or could not answer; ``reason`` is a ReasonCode."""

    def __init__(self, reason: ReasonCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.hint = reason, message, hint

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray) intact
        return (PluginError, (self.reason, self.message, self.hint))


@dataclass
class HostResult:
    vectors: pd.DataFrame
    failures: list[RowFailure] = field(default_factory=list)
    rows_in: int = 0
    rows_embedded: int = 0


def unpack_archive(archive: bytes, dest: Path) -> Path:
    """Extract a plugin zip into ``dest``; returns the directory that holds ``manifest.py``.

    That is the archive's root, or its single top-level directory (``zip -r name.zip name/``).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith("/") or ".." in parts:
                raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"unsafe path in archive: {info.filename!r}")
        zf.extractall(dest)
    if (dest / "manifest.py").exists():
        return dest
    tops = [p for p in dest.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(tops) == 1 and (tops[0] / "manifest.py").exists():
        return tops[0]
    raise PluginError(
        ReasonCode.PLUGIN_LOAD_FAILED,
        "archive has no manifest.py at its root or in its single top-level directory",
    )


class PluginHost:
    """One loaded plugin: its manifest features and its instantiated steps."""

    def __init__(
        self,
        plugin_dir: Path,
        plugin_id: str,
        features: list[FeatureSpec],
        steps: list[tuple[Any, RowCondition]],
        model_loads: int,
        memory_limit_bytes: int | None = None,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.plugin_id = plugin_id
        self.features = features
        self.steps = steps
        self.model_loads = model_loads
        self.memory_limit_bytes = memory_limit_bytes

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def load(
        cls,
        plugin_dir: Path,
        *,
        plugin_id: str,
        parameters: dict[str, Any] | None = None,
        container: PluginContainer | None = None,
        memory_limit_bytes: int | None = None,
    ) -> PluginHost:
        """Import the plugin and build its steps. ``memory_limit_bytes`` is given when it runs in the
        platform's sandbox, under that limit: a MemoryError, or a refusal from the kernel's side of
        the sandbox, then fails rows with ``sandbox_violation``."""
        plugin_dir = Path(plugin_dir).resolve()
        install_aliases()
        package = _import_package(plugin_dir, plugin_id)
        try:
            manifest = importlib.import_module(f"{package}.manifest")
            pipeline = importlib.import_module(f"{package}.pipeline")
            features = _features(manifest)
            request = ExtractorRequest(
                feature_extractor_name=_manifest_value(manifest, "feature_extractor_name", ""),
                version=str(_manifest_value(manifest, "version", "")),
                plugin_id=plugin_id,
                extractor_config=ExtractorConfig(parameters=dict(parameters or {})),
            )
            built = pipeline.build_steps(request, container=container or PluginContainer(), base_steps=None)
            raw_steps = built.get("steps") if isinstance(built, dict) else built
            if not raw_steps:
                raise ValueError("build_steps returned no steps: return {'steps': [...]} with at least one step")
            steps, loads = _instantiate(raw_steps)
        except PluginError:
            raise
        except Exception as exc:
            refused = _refusal(exc, plugin_dir, memory_limit_bytes)
            raise refused or PluginError(ReasonCode.PLUGIN_LOAD_FAILED, _describe(exc, plugin_dir)) from exc
        return cls(plugin_dir, plugin_id, features, steps, loads, memory_limit_bytes)

    # ------------------------------------------------------------------------------------ running

    def run(self, frame: pd.DataFrame) -> HostResult:
        """Run ``frame`` (the guide's DataFrame columns) through every step; validate the output."""
        frame = frame.reset_index(drop=True)
        rows_in = len(frame)
        try:
            out, errors = self._run_steps(frame.copy())
        except PluginError as err:
            return self._all_failed(frame, err.reason, err.message, err.hint)
        failures: list[RowFailure] = []
        missing = [f.feature_name for f in self.features if f.feature_name not in out.columns]
        missing_problem = (
            ReasonCode.MISSING_OUTPUT_COLUMN,
            f"the plugin returned no column {missing} (manifest features); it returned {list(out.columns)}",
            "set batch[<feature_name>] to one vector per row, using the exact feature_name of the manifest",
        )
        keep: list[int] = []
        vectors: dict[str, list[list[float]]] = {f.feature_name: [] for f in self.features}
        for i in range(rows_in):
            if i in errors:
                failures.append(_failure(frame, i, errors[i].reason, errors[i].message, errors[i].hint))
                continue
            if missing:
                failures.append(_failure(frame, i, *missing_problem))
                continue
            row_vectors: dict[str, list[float]] = {}
            problem: tuple[ReasonCode, str] | None = None
            for feature in self.features:
                vector, problem = _vector(out.at[i, feature.feature_name], feature.feature_name)
                if problem:
                    break
                row_vectors[feature.feature_name] = vector  # type: ignore[assignment]
            if problem:
                failures.append(_failure(frame, i, problem[0], problem[1]))
                continue
            keep.append(i)
            for name, vector in row_vectors.items():
                vectors[name].append(vector)
        result = pd.DataFrame(
            {
                "document_id": frame["document_id"].iloc[keep].tolist(),
                "object_id": frame["object_id"].iloc[keep].tolist(),
                "blob_id": frame["blob_id"].iloc[keep].tolist(),
                **vectors,
                "payload": [self._payload(frame, out, i) for i in keep],
            }
        )
        return HostResult(result, failures, rows_in, len(keep))

    def embed_query(self, text: str) -> dict[str, list[float]]:
        """Embed one query text through the plugin's own steps, as a one-row frame."""
        frame = pd.DataFrame(
            [
                {
                    "data": text,
                    "document_id": "query",
                    "object_id": "query",
                    "blob_id": "query",
                    "blob_property": "query",
                    "blob_type": "text",
                    "collection_id": "",
                    "feature_extractor_id": self.plugin_id,
                    "mime_type": "text/plain",
                    "size_bytes": 0,
                }
            ]
        )
        result = self.run(frame)
        if result.failures:
            failure = result.failures[0]
            raise PluginError(failure.reason, failure.message, failure.hint)
        return {f.feature_name: list(result.vectors.at[0, f.feature_name]) for f in self.features}

    def _run_steps(self, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, RowError]]:
        """The output of the last step, and the rows a step failed with a :class:`RowError`."""
        errors: dict[int, RowError] = {}
        for step, condition in self.steps:
            if condition is RowCondition.ALWAYS and not errors:
                batch = self._call(step, batch)
                _collect_row_errors(batch, errors)
                continue
            mask = batch["mime_type"].map(condition.matches).astype(bool) & ~batch.index.isin(list(errors))
            if not mask.any():
                continue
            selected = batch[mask].reset_index(drop=True)
            processed = self._call(step, selected).set_axis(batch.index[mask])
            _collect_row_errors(processed, errors)
            batch = pd.concat([processed, batch[~mask]]).sort_index()
        return batch, errors

    def _call(self, step: Any, batch: pd.DataFrame) -> pd.DataFrame:
        n = len(batch)
        try:
            out = step(batch)
        except KeyError as exc:
            column = exc.args[0] if exc.args else ""
            hint = DATA_HINT if isinstance(column, str) and column not in batch.columns else None
            raise PluginError(ReasonCode.PLUGIN_EXCEPTION, _describe(exc, self.plugin_dir), hint) from exc
        except Exception as exc:
            refused = _refusal(exc, self.plugin_dir, self.memory_limit_bytes)
            raise refused or PluginError(ReasonCode.PLUGIN_EXCEPTION, _describe(exc, self.plugin_dir)) from exc
        if not isinstance(out, pd.DataFrame):
            raise PluginError(
                ReasonCode.PLUGIN_EXCEPTION,
                f"step {_name(step)} returned {type(out).__name__}, not a pandas DataFrame",
                "__call__(batch) must return the batch DataFrame",
            )
        if len(out) != n:
            raise PluginError(
                ReasonCode.ROW_COUNT_MISMATCH, f"step {_name(step)} returned {len(out)} rows for {n}", ROWS_HINT
            )
        return out.reset_index(drop=True)

    def _all_failed(self, frame: pd.DataFrame, reason: ReasonCode, message: str, hint: str | None = None) -> HostResult:
        rows = zip(frame["document_id"].astype(str), frame["object_id"].astype(str), strict=True)
        failures = RowFailure.every(rows, reason, message, hint)
        empty = pd.DataFrame(
            columns=["document_id", "object_id", "blob_id", *(f.feature_name for f in self.features), "payload"]
        )
        return HostResult(empty, failures, len(frame), 0)

    def _payload(self, frame: pd.DataFrame, out: pd.DataFrame, i: int) -> str:
        payload: dict[str, Any] = {
            "blob_property": frame.at[i, "blob_property"],
            "blob_type": frame.at[i, "blob_type"],
            "mime_type": frame.at[i, "mime_type"],
        }
        if frame.at[i, "blob_type"] == "text":
            payload["text"] = frame.at[i, "data"]
        skip = set(FRAME_COLUMNS) | {f.feature_name for f in self.features}
        for column in out.columns:
            if column in skip or not isinstance(column, str):
                continue
            value = _jsonable(out.at[i, column])
            if value is not _UNSERIALISABLE:
                payload[column] = value
        return json.dumps(payload)


# ------------------------------------------------------------------------------------------ helpers

_UNSERIALISABLE = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return _UNSERIALISABLE
    return value


def _collect_row_errors(out: pd.DataFrame, errors: dict[int, RowError]) -> None:
    """Record the first :class:`RowError` of each row of ``out`` (indexed by the frame's rows)."""
    for column in out.columns:
        if out[column].dtype != object:
            continue
        for i, value in out[column].items():
            if isinstance(value, RowError):
                errors.setdefault(int(i), value)


def _vector(value: Any, name: str) -> tuple[list[float] | None, tuple[ReasonCode, str] | None]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, (ReasonCode.NULL_OUTPUT, f"the plugin returned None for {name!r}")
    try:
        array = np.asarray(value, dtype=np.float32).ravel()
    except (TypeError, ValueError):
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} is not a list of numbers: {str(value)[:80]}")
    if array.size == 0:
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} is an empty vector")
    if not np.isfinite(array).all():
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} contains NaN or infinity")
    return array.tolist(), None


def _failure(frame: pd.DataFrame, i: int, reason: ReasonCode, message: str, hint: str | None = None) -> RowFailure:
    return RowFailure(
        document_id=str(frame.at[i, "document_id"]),
        object_id=str(frame.at[i, "object_id"]),
        reason=reason,
        message=message,
        hint=hint,
    )


def _name(step: Any) -> str:
    return getattr(step, "__name__", type(step).__name__)


_REFUSED_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS}


def _refusal(exc: BaseException, plugin_dir: Path, memory_limit_bytes: int | None) -> PluginError | None:
    """A ``sandbox_violation`` error when ``exc`` is (or was caused by) a refusal of the sandbox."""
    seen: BaseException | None = exc
    for _ in range(16):  # the plugin may have wrapped the violation in an error of its own
        if seen is None:
            break
        if isinstance(seen, SandboxViolation):
            return PluginError(ReasonCode.SANDBOX_VIOLATION, seen.message, seen.hint)
        if isinstance(seen, MemoryError) and memory_limit_bytes:
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the plugin ran out of memory: its limit is {memory_limit_bytes / 1024**3:g} GiB "
                f"({_describe(seen, plugin_dir)})",
                "raise compute_profile.actor_memory_gb, or lower compute_profile.batch_size",
            )
        if memory_limit_bytes and isinstance(seen, OSError) and seen.errno in _REFUSED_ERRNOS:
            # In the sandbox these come from the kernel's side of it (seccomp, read-only mounts).
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the sandbox refused an operation: {type(seen).__name__}: {seen}",
                "plugin code may not start processes, write outside its scratch directory or open connections",
            )
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException, plugin_dir: Path) -> str:
    """The exception, and where in the plugin's own code it came from."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        try:
            rel = Path(frame.filename).resolve().relative_to(plugin_dir)
        except ValueError:
            continue
        where = f" (at {rel.as_posix()}:{frame.lineno})"
        break
    return f"{type(exc).__name__}: {exc}{where}"


def _import_package(plugin_dir: Path, plugin_id: str) -> str:
    """Import the plugin directory as a package so that its relative imports work."""
    sys.modules.setdefault("featurebus_plugins", _namespace("featurebus_plugins", []))
    digest = hashlib.sha1(str(plugin_dir).encode()).hexdigest()[:10]
    name = f"featurebus_plugins.{''.join(c if c.isalnum() else '_' for c in plugin_id)}_{digest}"
    if name in sys.modules:
        return name
    init = plugin_dir / "__init__.py"
    try:
        if init.exists():
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(plugin_dir)])
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            sys.modules[name] = _namespace(name, [str(plugin_dir)])
    except Exception as exc:
        sys.modules.pop(name, None)
        raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, _describe(exc, plugin_dir)) from exc
    return name


def _namespace(name: str, path: list[str]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = path
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = path
    return module


def _manifest_value(manifest: Any, key: str, default: Any) -> Any:
    if hasattr(manifest, key):
        return getattr(manifest, key)
    metadata = getattr(manifest, "metadata", None)
    return metadata.get(key, default) if isinstance(metadata, dict) else default


def _features(manifest: Any) -> list[FeatureSpec]:
    raw = getattr(manifest, "features", None)
    if not raw:
        raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "manifest.py declares no features: nothing would be indexed")
    return [FeatureSpec.model_validate(entry) for entry in raw]


def _instantiate(raw_steps: list[Any]) -> tuple[list[tuple[Any, RowCondition]], int]:
    steps: list[tuple[Any, RowCondition]] = []
    loads = 0
    for raw in raw_steps:
        if isinstance(raw, PipelineStep):
            steps.append((_construct(raw.service_class, raw.config), raw.condition))
            loads += 1
        elif callable(raw):
            steps.append((raw, RowCondition.ALWAYS))
        else:
            raise TypeError(f"build_steps returned a step of type {type(raw).__name__}: expected a step or a callable")
    return steps, loads


def _construct(service_class: Any, config: Any) -> Any:
    if not isinstance(service_class, type):
        return service_class  # already an instance (or a function)
    try:
        return service_class(config)
    except TypeError as first:
        if config is None:
            try:
                return service_class()
            except TypeError:
                pass
        raise first
