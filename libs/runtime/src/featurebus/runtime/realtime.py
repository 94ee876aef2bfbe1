"""The real-time half of a plugin: ``realtime.py``'s ``InferenceService``, loaded once and called.

The guide's contract: ``class InferenceService(BaseInferenceService)`` with
``async __call__(self, inputs, parameters) -> dict`` (or ``run_inference``); the answer's
``"embedding"`` key is the primary query vector, and a key named after a manifest feature is that
feature's vector. What the guide lets fail silently fails loudly here: an answer that is not a
JSON object, a missing vector, a vector of the wrong dimension.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import threading
from pathlib import Path
from typing import Any

from featurebus.common.events import FeatureSpec, ReasonCode
from featurebus.runtime._loading import import_package, manifest_features
from featurebus.runtime._outputs import check_vector
from featurebus.runtime.errors import PluginError, plugin_failure
from featurebus.runtime.queries import Query, query_inputs
from featurebus.sdk.aliases import install_aliases
from featurebus.sdk.serve import BaseInferenceService

__all__ = ["PRIMARY_KEY", "RealtimeHost"]

PRIMARY_KEY = "embedding"
_CONTRACT_HINT = (
    "realtime.py defines class InferenceService(BaseInferenceService) with "
    "async __call__(self, inputs, parameters) -> dict"
)


class RealtimeHost:
    """One loaded ``InferenceService``; :meth:`infer` answers a request, :meth:`embed_query` a query."""

    def __init__(
        self,
        plugin_dir: Path,
        plugin_id: str,
        features: list[FeatureSpec],
        service: Any,
        memory_limit_bytes: int | None,
    ) -> None:
        self.plugin_dir = plugin_dir
        self.plugin_id = plugin_id
        self.features = features
        self.service = service
        self.memory_limit_bytes = memory_limit_bytes
        # The service's coroutines run on one loop of its own, whichever thread calls.
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name=f"realtime-{plugin_id}", daemon=True).start()

    @classmethod
    def load(cls, plugin_dir: Path, *, plugin_id: str, memory_limit_bytes: int | None = None) -> RealtimeHost:
        """Import ``realtime.py`` and construct its ``InferenceService`` once; PluginError saying why not."""
        plugin_dir = Path(plugin_dir).resolve()
        if not (plugin_dir / "realtime.py").is_file():
            raise PluginError(
                ReasonCode.PLUGIN_LOAD_FAILED,
                f"{plugin_id} has no realtime.py, so it has no real-time endpoint",
                "add realtime.py, or deploy with ?deployment_type=batch_only",
            )
        install_aliases()
        package = import_package(plugin_dir, plugin_id)
        try:
            features = manifest_features(importlib.import_module(f"{package}.manifest"))
            module = importlib.import_module(f"{package}.realtime")
        except PluginError:
            raise
        except Exception as exc:
            raise plugin_failure(
                exc, plugin_dir, memory_limit_bytes, ReasonCode.PLUGIN_LOAD_FAILED, "importing realtime.py failed: "
            ) from exc
        service_class = getattr(module, "InferenceService", None)
        if not (isinstance(service_class, type) and issubclass(service_class, BaseInferenceService)):
            raise PluginError(
                ReasonCode.PLUGIN_LOAD_FAILED,
                "realtime.py has no class InferenceService(BaseInferenceService)",
                _CONTRACT_HINT,
            )
        try:
            service = service_class()
        except Exception as exc:
            raise plugin_failure(
                exc, plugin_dir, memory_limit_bytes, ReasonCode.PLUGIN_LOAD_FAILED, "InferenceService.__init__ failed: "
            ) from exc
        return cls(plugin_dir, plugin_id, features, service, memory_limit_bytes)

    def infer(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        """The service's answer to one request: a JSON object, else PluginError."""
        try:
            answer = self.service(inputs, parameters)
            if inspect.isawaitable(answer):
                answer = asyncio.run_coroutine_threadsafe(_awaited(answer), self._loop).result()
        except PluginError:
            raise
        except Exception as exc:
            raise plugin_failure(exc, self.plugin_dir, self.memory_limit_bytes, ReasonCode.PLUGIN_EXCEPTION) from exc
        if not isinstance(answer, dict):
            raise PluginError(
                ReasonCode.PLUGIN_EXCEPTION,
                f"InferenceService returned {type(answer).__name__}, not a dict",
                'return a dict, e.g. {"embedding": vector}',
            )
        try:
            return dict(json.loads(json.dumps(answer, default=_jsonable)))
        except (TypeError, ValueError) as exc:
            raise PluginError(
                ReasonCode.PLUGIN_EXCEPTION,
                f"InferenceService's answer is not JSON: {exc}",
                "return lists and numbers (e.g. vector.tolist()), not tensors or arrays",
            ) from None

    def embed_query(self, query: Query, parameters: dict[str, Any] | None = None) -> dict[str, list[float]]:
        """Every manifest feature's vector for one query, a text or a blob (its own key, else ``"embedding"``)."""
        vectors: dict[str, list[float]] = {}
        for feature in self.features:
            answer = self.infer(query_inputs(query, feature.feature_name), dict(parameters or {}))
            vectors[feature.feature_name] = checked_vector(answer, feature)
        return vectors

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def checked_vector(answer: dict[str, Any], feature: FeatureSpec) -> list[float]:
    """The vector ``answer`` gives ``feature`` (its name, else ``"embedding"``), checked against the manifest."""
    name = feature.feature_name
    key = name if name in answer else PRIMARY_KEY
    if key not in answer:
        raise PluginError(
            ReasonCode.MISSING_OUTPUT_COLUMN,
            f"realtime.py answered without {PRIMARY_KEY!r} or {name!r}; it answered {sorted(answer)[:10]}",
            f'return {{"{PRIMARY_KEY}": vector}}: feature_search reads that key',
        )
    vector, problem = check_vector(answer[key], key, feature.distance_metric)
    if problem:
        reason, message, hint = problem
        raise PluginError(reason, f"realtime.py: {message}", hint)
    assert vector is not None
    if len(vector) != feature.embedding_dim:
        raise PluginError(
            ReasonCode.DIMENSION_MISMATCH,
            f"realtime.py returned a {len(vector)}-dimensional {key!r}; the manifest's {name!r} has "
            f"embedding_dim {feature.embedding_dim}",
            "the query vector must come from the same model (and size) as the indexed one",
        )
    return vector


async def _awaited(answer: Any) -> Any:
    return await answer


def _jsonable(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy arrays and scalars, torch tensors
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
