"""The two plugins the quality bench indexes with: a builtin text embedder each, as a plugin author
writes one (the guide's ``get_batch_service``; ``services/inference/tests/test_sandbox_builtins.py``).

``qb_minilm`` runs ``sentence-transformers/all-MiniLM-L6-v2`` (its ``engine`` from the collection's
parameters, ``onnx`` by default as for any plugin), ``qb_e5`` runs ``intfloat/multilingual-e5-small``
(query rows get ``query: ``, the others ``passage: ``). Each has one 384-d cosine feature.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

__all__ = ["E5", "MINILM", "PLUGINS", "QualityPlugin"]

VERSION = "1.0.0"

MANIFEST = '''"""{name}: {model} embeddings of text blobs (the builtin batch service)."""

feature_extractor_name = "{name}"
version = "{version}"
description = "{model} embeddings of text blobs"
category = "text"
supported_input_types = ["text"]
dependencies = []

features = [
    {{"feature_type": "embedding", "feature_name": "{feature}", "embedding_dim": 384, "distance_metric": "cosine"}},
]

compute_profile = {{"resource_type": "cpu", "batch_size": 64, "max_concurrency": 1}}
'''

PIPELINE = '''from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps
from shared.inference.registry import get_batch_service

from .manifest import feature_extractor_name, version

MODEL = "{model}"


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    """One CPU step: the builtin embedder over every text row (and every query text)."""
    params = extractor_request.extractor_config.parameters or {{}}
    config = {{"text_column": "data", "output_column_name": "{feature}"}}
    if "engine" in params:
        config["engine"] = str(params["engine"])
    step = StepDefinition(service_class=get_batch_service(MODEL), resource_type=ResourceType.CPU, config=config)
    pipeline = PipelineDefinition(name=feature_extractor_name, version=version, steps=[step])
    return {{"steps": build_pipeline_steps(pipeline)}}
'''


@dataclass(frozen=True)
class QualityPlugin:
    name: str
    model: str
    feature: str
    version: str = VERSION

    @property
    def feature_uri(self) -> str:
        return f"mixpeek://{self.name}@{self.version}/{self.feature}"

    def archive(self) -> bytes:
        """The plugin as ``zip -r name.zip name/`` makes it (fixed dates: the same bytes every run)."""
        fields = {"name": self.name, "model": self.model, "feature": self.feature, "version": self.version}
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for path, template in (("manifest.py", MANIFEST), ("pipeline.py", PIPELINE)):
                entry = zipfile.ZipInfo(f"{self.name}/{path}", date_time=(2026, 1, 1, 0, 0, 0))
                entry.external_attr = 0o644 << 16
                zf.writestr(entry, template.format(**fields))
        return buffer.getvalue()


MINILM = QualityPlugin("qb_minilm", "sentence-transformers/all-MiniLM-L6-v2", "minilm_embedding")
E5 = QualityPlugin("qb_e5", "intfloat/multilingual-e5-small", "e5_embedding")
PLUGINS = (MINILM, E5)
