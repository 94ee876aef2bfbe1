"""Declarative pipelines, as the guide writes them (``engine.plugins.extractors.pipeline``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "PipelineDefinition",
    "PipelineStep",
    "ResourceType",
    "RowCondition",
    "StepDefinition",
    "build_pipeline_steps",
]


class ResourceType(StrEnum):
    CPU = "cpu"
    GPU = "gpu"
    API = "api"


class RowCondition(StrEnum):
    """Which rows a step sees, by MIME type (the guide's table)."""

    IS_TEXT = "text/"
    IS_IMAGE = "image/"
    IS_VIDEO = "video/"
    IS_AUDIO = "audio/"
    IS_PDF = "application/pdf"
    ALWAYS = "*"

    def matches(self, mime_type: str | None) -> bool:
        if self is RowCondition.ALWAYS:
            return True
        mime = (mime_type or "").lower()
        return mime == self.value if self is RowCondition.IS_PDF else mime.startswith(self.value)


@dataclass
class StepDefinition:
    service_class: Any
    resource_type: ResourceType = ResourceType.CPU
    config: Any = None
    condition: RowCondition = RowCondition.ALWAYS
    enabled: bool = True
    name: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        service_class: Any,
        resource_type: ResourceType = ResourceType.CPU,
        config: Any = None,
        condition: RowCondition = RowCondition.ALWAYS,
        enabled: bool = True,
        name: str | None = None,
        **extras: Any,
    ) -> None:
        self.service_class = service_class
        self.resource_type = resource_type
        self.config = config
        self.condition = condition
        self.enabled = bool(enabled)
        self.name = name or getattr(service_class, "__name__", type(service_class).__name__)
        self.extras = extras


@dataclass
class PipelineDefinition:
    name: str
    version: str
    steps: list[StepDefinition]
    description: str = ""


@dataclass
class PipelineStep:
    """One runnable step: the host instantiates ``service_class(config)`` once per actor."""

    name: str
    service_class: Any
    config: Any
    resource_type: ResourceType
    condition: RowCondition


def build_pipeline_steps(pipeline: PipelineDefinition) -> list[PipelineStep]:
    """The enabled steps of ``pipeline``, in order (steps with ``enabled=False`` are left out)."""
    return [
        PipelineStep(
            s.name or "step", s.service_class, s.config, ResourceType(s.resource_type), RowCondition(s.condition)
        )
        for s in pipeline.steps
        if s.enabled
    ]
