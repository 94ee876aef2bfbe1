"""The guide's import paths, resolved to featurebus.sdk's objects.

A plugin written for the guide imports ``engine.plugins.extractors.pipeline``, ``shared.plugins``
and friends; :func:`install_aliases` registers modules under those names whose attributes are
the very objects of featurebus.sdk, so such a plugin runs here unchanged.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from featurebus.sdk import assets, batch, builtin_services, container, model_loading, pipeline, rows, serve

__all__ = ["ALIASES", "install_aliases"]


def _ns(**attrs: Any) -> dict[str, Any]:
    return attrs


_PLUGINS = _ns(
    open_asset=assets.open_asset,
    download_asset=assets.download_asset,
    parallel_io=assets.parallel_io,
    concurrent_api_calls=assets.concurrent_api_calls,
    RowError=rows.RowError,
    BaseInferenceService=serve.BaseInferenceService,
    BaseBatchInferenceService=batch.BaseBatchInferenceService,
    # container.llm.process(LLMRequest(...)): the guide names the class, not its module.
    LLMRequest=container.LLMRequest,
    LLMResult=container.LLMResult,
    LLMError=container.LLMError,
)

ALIASES: dict[str, dict[str, Any]] = {
    "engine": {},
    "engine.plugins": {},
    "engine.plugins.extractors": {},
    "engine.plugins.extractors.pipeline": {name: getattr(pipeline, name) for name in pipeline.__all__},
    "engine.models": {name: getattr(model_loading, name) for name in model_loading.__all__},
    "shared": {},
    "shared.plugins": _PLUGINS,
    "shared.plugins.sdk": _PLUGINS,
    "shared.plugins.inference": {},
    "shared.plugins.inference.serve": {"BaseInferenceService": serve.BaseInferenceService},
    "shared.plugins.inference.batch": {"BaseBatchInferenceService": batch.BaseBatchInferenceService},
    "shared.inference": {},
    "shared.inference.registry": {"get_batch_service": builtin_services.get_batch_service},
    "shared.models": {},
    "shared.models.loader": {name: getattr(model_loading, name) for name in model_loading.__all__},
    "shared.utilities": {},
    "shared.utilities.files": {"resolve_url_to_local_path": assets.resolve_url_to_local_path},
}


def install_aliases() -> None:
    """Register the guide's module names in ``sys.modules`` (idempotent)."""
    for name, attrs in ALIASES.items():
        module = sys.modules.get(name)
        if module is None or not getattr(module, "__featurebus_alias__", False):
            module = types.ModuleType(name, f"featurebus alias of the guide's {name}")
            module.__featurebus_alias__ = True  # type: ignore[attr-defined]
            module.__path__ = []  # a package, so submodules can be imported
            sys.modules[name] = module
        module.__dict__.update(attrs)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
