"""Plugins from the guide, verbatim where the guide gives them, as zip archives built in memory."""

from __future__ import annotations

import io
import zipfile

QUICKSTART_MANIFEST = """
from pydantic import BaseModel, Field
from typing import List, Optional

class MyInput(BaseModel):
    text: str = Field(..., description="Input text to process")

class MyOutput(BaseModel):
    embedding: List[float] = Field(..., description="384-dim embedding vector")
    sentiment: str = Field(..., description="positive/negative/neutral")

class MyParams(BaseModel):
    threshold: float = Field(default=0.5, ge=0, le=1, description="Confidence threshold")
    model_size: str = Field(default="base", description="Model size: base or large")

metadata = {
    "feature_extractor_name": "my_extractor",
    "version": "1.0.0",
    "description": "Custom text embedding with sentiment analysis",
    "category": "text",
}
input_schema = MyInput
output_schema = MyOutput
parameter_schema = MyParams
supported_input_types = ["text"]
features = [
    {
        "feature_name": "my_embedding",
        "feature_type": "embedding",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    },
]
"""

QUICKSTART_CORE = """
from dataclasses import dataclass
import pandas as pd

@dataclass
class MyConfig:
    threshold: float = 0.5
    model_size: str = "base"

class MyProcessor:
    def __init__(self, config: MyConfig, progress_actor=None):
        self.config = config
        self._model = None

    def _ensure_model_loaded(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            model_name = "all-MiniLM-L6-v2" if self.config.model_size == "base" else "all-mpnet-base-v2"
            self._model = SentenceTransformer(model_name)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self._ensure_model_loaded()
        texts = batch["data"].fillna("").tolist()
        embeddings = self._model.encode(texts).tolist()
        batch["my_embedding"] = embeddings
        batch["sentiment"] = ["positive" if len(t) > 50 else "neutral" for t in texts]
        return batch
"""

QUICKSTART_PIPELINE = """
from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    StepDefinition,
    build_pipeline_steps
)
from .manifest import MyParams, metadata
from .processors.core import MyConfig, MyProcessor

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    params = MyParams(**(extractor_request.extractor_config.parameters or {}))
    config = MyConfig(threshold=params.threshold, model_size=params.model_size)
    pipeline = PipelineDefinition(
        name=metadata["feature_extractor_name"],
        version=metadata["version"],
        steps=[StepDefinition(service_class=MyProcessor, resource_type=ResourceType.CPU, config=config)]
    )
    steps = build_pipeline_steps(pipeline)
    return {"steps": steps}
"""

QUICKSTART_REALTIME = """
from shared.plugins.inference.serve import BaseInferenceService

class InferenceService(BaseInferenceService):
    def __init__(self):
        super().__init__()
        self._model = None

    async def __call__(self, inputs: dict, parameters: dict) -> dict:
        if self._model is None:
            from sentence_transformers import SentenceTransformer
            self._model = SentenceTransformer("all-MiniLM-L6-v2")
        text = inputs.get("text", "")
        embedding = self._model.encode([text])[0].tolist()
        return {"embedding": embedding, "sentiment": "positive" if len(text) > 50 else "neutral"}
"""

IMAGE_MANIFEST = """
feature_extractor_name = "image_classifier"
version = "1.0.0"
description = "Image classification with structured labels"
dependencies = ["torch", "torchvision", "pillow"]
features = [
    {
        "feature_name": "image_embedding",
        "feature_type": "embedding",
        "embedding_dim": 512,
        "distance_metric": "cosine",
    }
]
feature_uri = "mixpeek://image_classifier@1.0.0/image_embedding"
output_schema = {
    "image_embedding": {"type": "array", "items": {"type": "number"}},
    "labels": {"type": "array", "items": {"type": "string"}},
    "confidence": {"type": "number"},
}
"""

IMAGE_PROCESSOR = """
import io
import pandas as pd
from shared.plugins.sdk import parallel_io

class ImageClassifierProcessor:
    def __init__(self, config=None, **kwargs):
        self._model = None
        self.config = config or {}

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        import torch
        from PIL import Image
        urls = [row.get("source_url") or row.get("image_url", "") for _, row in batch.iterrows()]

        def download_image(url):
            import requests
            resp = requests.get(url, timeout=30)
            return Image.open(io.BytesIO(resp.content)).convert("RGB")

        downloaded = parallel_io(urls, download_image, max_workers=8)
        batch["image_embedding"] = [[0.0] * 512] * len(urls)
        return batch
"""

IMAGE_PIPELINE = """
from engine.plugins.extractors.pipeline import (
    PipelineDefinition, ResourceType, RowCondition,
    StepDefinition, build_pipeline_steps,
)
from .processors.classifier import ImageClassifierProcessor

def build_steps(extractor_request, container=None, **kwargs):
    params = (extractor_request.extractor_config.parameters or {})
    pipeline = PipelineDefinition(
        name="image_classifier",
        version="1.0.0",
        steps=[
            StepDefinition(
                service_class=ImageClassifierProcessor,
                resource_type=ResourceType.GPU,
                condition=RowCondition.IS_IMAGE,
                config={"threshold": params.get("threshold", 0.5)},
            ),
        ]
    )
    return {"steps": build_pipeline_steps(pipeline)}
"""

SECRETS_PIPELINE = """
import os
from .processors.core import MyProcessor

def build_steps(extractor_request, container=None, **kwargs):
    model_name = getattr(extractor_request, "model_name", "default")
    if hasattr(container, "secrets") and os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK") == "1":
        model_name = os.path.join("models", model_name)
    processor = MyProcessor(config={}, secrets=container.secrets)
    return {"steps": [processor], "prepare": lambda ds: ds}
"""


def archive(files: dict[str, str], top: str | None = "plugin") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in files.items():
            zf.writestr(f"{top}/{name}" if top else name, text)
    return buffer.getvalue()


def quickstart(**overrides: str) -> dict[str, str]:
    files = {
        "manifest.py": QUICKSTART_MANIFEST,
        "pipeline.py": QUICKSTART_PIPELINE,
        "realtime.py": QUICKSTART_REALTIME,
        "processors/__init__.py": "",
        "processors/core.py": QUICKSTART_CORE,
    }
    files.update(overrides)
    return files
