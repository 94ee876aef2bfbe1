"""The plugin host: load a plugin once, run frames through its steps, account for every row.

Used inside inference's workers (never in a service process) and by ``featurebus plugin test``.
What the guide says fails silently fails loudly here: every row that does not produce a valid
vector for every manifest feature comes back as a :class:`RowFailure` with a reason code and,
where the guide names the mistake, a hint.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from featurebus.common.events import FeatureSpec, ReasonCode, RowFailure
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime._loading import import_package, instantiate_steps, manifest_features, manifest_value
from featurebus.runtime._outputs import (
    UNSERIALISABLE,
    Problem,
    check_vector,
    collect_row_errors,
    jsonable,
    row_failure,
)
from featurebus.runtime.errors import PluginError, describe, plugin_failure
from featurebus.runtime.queries import Query, query_row
from featurebus.sdk.aliases import install_aliases
from featurebus.sdk.container import PluginContainer
from featurebus.sdk.pipeline import RowCondition
from featurebus.sdk.request import ExtractorConfig, ExtractorRequest
from featurebus.sdk.rows import RowError, take_failed_calls

__all__ = ["DATA_HINT", "ROWS_HINT", "HostResult", "PluginHost"]

DATA_HINT = (
    "custom plugins always read batch['data'], not a column named after the blob property: "
    "for text blobs 'data' holds the raw string, for binary blobs an s3:// URL"
)
ROWS_HINT = "return the whole batch with the same number of rows; see the guide's 'Processing only batch.iloc[0]'"


@dataclass
class HostResult:
    """One frame's outcome: a row of vectors (and payload) per embedded row, a failure per other row."""

    vectors: pd.DataFrame
    failures: list[RowFailure] = field(default_factory=list)
    rows_in: int = 0
    rows_embedded: int = 0


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
        package = import_package(plugin_dir, plugin_id)
        try:
            manifest = importlib.import_module(f"{package}.manifest")
            pipeline = importlib.import_module(f"{package}.pipeline")
            features = manifest_features(manifest)
            request = ExtractorRequest(
                feature_extractor_name=manifest_value(manifest, "feature_extractor_name", ""),
                version=str(manifest_value(manifest, "version", "")),
                plugin_id=plugin_id,
                extractor_config=ExtractorConfig(parameters=dict(parameters or {})),
            )
            built = pipeline.build_steps(request, container=container or PluginContainer(), base_steps=None)
            raw_steps = built.get("steps") if isinstance(built, dict) else built
            if not raw_steps:
                raise ValueError("build_steps returned no steps: return {'steps': [...]} with at least one step")
            steps, loads = instantiate_steps(raw_steps)
        except PluginError:
            raise
        except Exception as exc:
            raise plugin_failure(exc, plugin_dir, memory_limit_bytes, ReasonCode.PLUGIN_LOAD_FAILED) from exc
        return cls(plugin_dir, plugin_id, features, steps, loads, memory_limit_bytes)

    def run(self, frame: pd.DataFrame) -> HostResult:
        """Run ``frame`` (the guide's DataFrame columns) through every step; validate the output."""
        frame = frame.reset_index(drop=True)
        checked = self._checked(frame)
        if isinstance(checked, HostResult):
            return checked
        out, failures, keep, vectors = checked
        result = pd.DataFrame(
            {
                "document_id": frame["document_id"].iloc[keep].tolist(),
                "object_id": frame["object_id"].iloc[keep].tolist(),
                "blob_id": frame["blob_id"].iloc[keep].tolist(),
                **vectors,
                "payload": [self._payload(frame, out, i) for i in keep],
            }
        )
        return HostResult(result, failures, len(frame), len(keep))

    def _checked(
        self, frame: pd.DataFrame
    ) -> HostResult | tuple[pd.DataFrame, list[RowFailure], list[int], dict[str, list[list[float]]]]:
        """The steps' output, the rows that failed, the rows kept and their vectors (by feature, in
        the order of ``keep``); or, when the whole frame failed, its HostResult."""
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
                failures.append(row_failure(frame, i, errors[i].reason, errors[i].message, errors[i].hint))
                continue
            if missing:
                failures.append(row_failure(frame, i, *missing_problem))
                continue
            row_vectors: dict[str, list[float]] = {}
            problem: Problem | None = None
            for feature in self.features:
                name = feature.feature_name
                vector, problem = check_vector(out.at[i, name], name, feature.distance_metric)
                if problem:
                    break
                row_vectors[name] = vector  # type: ignore[assignment]
            if problem:
                failures.append(row_failure(frame, i, *problem))
                continue
            keep.append(i)
            for name, vector in row_vectors.items():
                vectors[name].append(vector)
        return out, failures, keep, vectors

    def embed_query(self, query: Query) -> dict[str, list[float]]:
        """One query's vectors, as :meth:`embed_queries` makes them; PluginError when it failed.

        What a plugin's own tests call to check that queries and documents meet."""
        [answer] = self.embed_queries([query])
        if isinstance(answer, PluginError):
            raise answer
        return answer

    def embed_queries(self, queries: list[Query]) -> list[dict[str, list[float]] | PluginError]:
        """Every manifest feature's vector for each query (a text or a blob), through the plugin's
        own steps as one frame (one model call for all of them); a query the plugin failed gets
        its PluginError."""
        # As run() checks a frame's rows, without the payloads and the result frame a query has no use for.
        frame = pd.DataFrame([query_row(i, q, self.plugin_id) for i, q in enumerate(queries)])
        checked = self._checked(frame)
        failures = checked.failures if isinstance(checked, HostResult) else checked[1]
        answers: list[dict[str, list[float]] | PluginError] = [
            PluginError(ReasonCode.PLUGIN_EXCEPTION, "the plugin returned no vector for this query")
        ] * len(queries)
        for failure in failures:
            answers[int(failure.document_id.removeprefix("query-"))] = PluginError(
                failure.reason, failure.message, failure.hint
            )
        if not isinstance(checked, HostResult):
            _, _, keep, vectors = checked
            for row, i in enumerate(keep):  # the i-th query is the frame's i-th row
                answers[i] = {f.feature_name: list(vectors[f.feature_name][row]) for f in self.features}
        return answers

    def _run_steps(self, batch: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, RowError]]:
        """The output of the last step, and the rows a step failed with a :class:`RowError`."""
        errors: dict[int, RowError] = {}
        for step, condition in self.steps:
            if condition is RowCondition.ALWAYS and not errors:
                batch = self._call(step, batch)
                collect_row_errors(batch, errors)
                continue
            mask = batch["mime_type"].map(condition.matches).astype(bool) & ~batch.index.isin(list(errors))
            if not mask.any():
                continue
            selected = batch[mask].reset_index(drop=True)
            processed = self._call(step, selected).set_axis(batch.index[mask])
            collect_row_errors(processed, errors)
            batch = pd.concat([processed, batch[~mask]]).sort_index()
        return batch, errors

    def _call(self, step: Any, batch: pd.DataFrame) -> pd.DataFrame:
        n = len(batch)
        take_failed_calls()
        try:
            out = step(batch)
        except KeyError as exc:
            column = exc.args[0] if exc.args else ""
            hint = DATA_HINT if isinstance(column, str) and column not in batch.columns else None
            raise self._failed_calls(exc) or PluginError(
                ReasonCode.PLUGIN_EXCEPTION, describe(exc, self.plugin_dir), hint
            ) from exc
        except Exception as exc:
            found = plugin_failure(exc, self.plugin_dir, self.memory_limit_bytes, ReasonCode.PLUGIN_EXCEPTION)
            if found.reason is ReasonCode.PLUGIN_EXCEPTION:  # after failed API calls, those are the cause
                found = self._failed_calls(exc) or found
            raise found from exc
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

    def _failed_calls(self, exc: BaseException) -> PluginError | None:
        """The frame's failure when the step raised after calls of concurrent_api_calls had failed:
        the calls are the cause (the step then computed with what a failed call gave it)."""
        failed = take_failed_calls()
        if not failed:
            return None
        message = f"{len(failed)} API calls failed (first: {failed[0].message}); the step then raised "
        # api_error, or llm_error when the first failed call was a container.llm call
        return PluginError(failed[0].reason, message + describe(exc, self.plugin_dir), failed[0].hint)

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
            value = jsonable(out.at[i, column])
            if value is not UNSERIALISABLE:
                payload[column] = value
        return json.dumps(payload)


def _name(step: Any) -> str:
    return getattr(step, "__name__", type(step).__name__)
