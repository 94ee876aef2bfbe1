"""Importing a plugin directory and building its steps: the parts of ``PluginHost.load``."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from featurebus.common.events import FeatureSpec, ReasonCode
from featurebus.runtime.errors import PluginError, describe
from featurebus.sdk.pipeline import PipelineStep, RowCondition

__all__ = ["import_package", "instantiate_steps", "manifest_features", "manifest_value"]


def import_package(plugin_dir: Path, plugin_id: str) -> str:
    """Import the plugin directory as a package so that its relative imports work; its name."""
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
        raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, describe(exc, plugin_dir)) from exc
    return name


def _namespace(name: str, path: list[str]) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = path
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = path
    return module


def manifest_value(manifest: Any, key: str, default: Any) -> Any:
    """``key`` of the manifest module, or of its ``metadata`` dict (both styles are the guide's)."""
    if hasattr(manifest, key):
        return getattr(manifest, key)
    metadata = getattr(manifest, "metadata", None)
    return metadata.get(key, default) if isinstance(metadata, dict) else default


def manifest_features(manifest: Any) -> list[FeatureSpec]:
    """The manifest's ``features``; a plugin without any would index nothing, so it does not load."""
    raw = getattr(manifest, "features", None)
    if not raw:
        raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "manifest.py declares no features: nothing would be indexed")
    return [FeatureSpec.model_validate(entry) for entry in raw]


def instantiate_steps(raw_steps: list[Any]) -> tuple[list[tuple[Any, RowCondition]], int]:
    """``build_steps``' steps as callables with their row condition, and how many were constructed."""
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
