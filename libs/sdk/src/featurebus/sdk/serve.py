"""Real-time inference base class (``shared.plugins.inference.serve``)."""

from __future__ import annotations

from typing import Any

__all__ = ["BaseInferenceService"]


class BaseInferenceService:
    """Subclass and define ``run_inference(inputs, parameters)`` or ``__call__(inputs, parameters)``.

    The response's ``"embedding"`` key is the primary query vector.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.config = kwargs.get("config")

    async def run_inference(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        if type(self).__call__ is BaseInferenceService.__call__:
            raise NotImplementedError(f"{type(self).__name__} must define run_inference(inputs, parameters)")
        return await self(inputs, parameters)

    async def __call__(self, inputs: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
        if type(self).run_inference is BaseInferenceService.run_inference:
            raise NotImplementedError(f"{type(self).__name__} must define run_inference(inputs, parameters)")
        return await self.run_inference(inputs, parameters)
