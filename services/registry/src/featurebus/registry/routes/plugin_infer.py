"""``POST /v1/namespaces/{ns}/plugins/{plugin_id}/infer``: a plugin's real-time endpoint (its ``realtime.py``).

``plugin_id`` is a version id (``text_embed_1_0_0``) or a plugin name (``text_embed``: whichever version
serves it now, which a blue-green rollout switches without the caller noticing).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.usecases import deployments

router = APIRouter(prefix="/v1/namespaces/{ns}/plugins")


class InferBody(BaseModel):
    """What ``InferenceService.__call__(inputs, parameters)`` receives."""

    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = Field(description='e.g. {"text": "a query"}')
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferView(BaseModel):
    plugin_id: str
    version: str
    output: dict[str, Any]  # realtime.py's answer, as it returned it
    latency_ms: float


@router.post("/{plugin_id}/infer")
async def infer(
    ns: str, plugin_id: str, body: InferBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> InferView:
    began = time.perf_counter()
    served, output = await deployments.infer(c, who, ns, plugin_id, body.inputs, body.parameters)
    latency = round((time.perf_counter() - began) * 1000, 2)
    return InferView(plugin_id=served.plugin_id, version=served.version, output=output, latency_ms=latency)
