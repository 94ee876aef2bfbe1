"""featurebus.sdk: the plugin author's API.

The guide's import paths (``engine.plugins.extractors.pipeline``, ``shared.plugins``, ...) resolve
to these same objects when featurebus loads a plugin (see :mod:`featurebus.sdk.aliases`).
"""

from featurebus.sdk.aliases import install_aliases
from featurebus.sdk.assets import (
    concurrent_api_calls,
    download_asset,
    open_asset,
    parallel_io,
    resolve_url_to_local_path,
)
from featurebus.sdk.batch import BaseBatchInferenceService
from featurebus.sdk.builtin_services import get_batch_service
from featurebus.sdk.container import PluginContainer, Secrets
from featurebus.sdk.model_loading import LazyModelMixin, lazy_model, load_hf_model, load_namespace_model
from featurebus.sdk.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)
from featurebus.sdk.request import ExtractorRequest
from featurebus.sdk.rows import RowError
from featurebus.sdk.serve import BaseInferenceService
from featurebus.sdk.violations import SandboxViolation

__all__ = [
    "BaseBatchInferenceService",
    "BaseInferenceService",
    "ExtractorRequest",
    "LazyModelMixin",
    "PipelineDefinition",
    "PluginContainer",
    "ResourceType",
    "RowCondition",
    "RowError",
    "SandboxViolation",
    "Secrets",
    "StepDefinition",
    "build_pipeline_steps",
    "concurrent_api_calls",
    "download_asset",
    "get_batch_service",
    "install_aliases",
    "lazy_model",
    "load_hf_model",
    "load_namespace_model",
    "open_asset",
    "parallel_io",
    "resolve_url_to_local_path",
]
