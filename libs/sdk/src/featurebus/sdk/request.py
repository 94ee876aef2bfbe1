"""What ``build_steps(extractor_request, ...)`` receives."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ExtractorConfig", "ExtractorRequest"]


class ExtractorConfig(BaseModel):
    parameters: dict[str, Any] = Field(default_factory=dict)


class ExtractorRequest(BaseModel):
    """``extractor_request.extractor_config.parameters`` holds the plugin's parameters (the guide)."""

    feature_extractor_name: str = ""
    version: str = ""
    plugin_id: str = ""
    collection_id: str | None = None
    namespace_id: str | None = None
    extractor_config: ExtractorConfig = Field(default_factory=ExtractorConfig)

    @property
    def params(self) -> dict[str, Any]:
        return self.extractor_config.parameters
