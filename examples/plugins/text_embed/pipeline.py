from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    StepDefinition,
    build_pipeline_steps,
)

from .manifest import feature_extractor_name, version
from .processors.core import EmbedConfig, TextEmbedProcessor


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    """Build the extraction pipeline: one CPU step that embeds every text row."""
    params = extractor_request.extractor_config.parameters or {}
    config = EmbedConfig(
        model_name=params.get("model_name", "all-MiniLM-L6-v2"),
        encode_batch_size=int(params.get("encode_batch_size", 64)),
    )
    pipeline = PipelineDefinition(
        name=feature_extractor_name,
        version=version,
        steps=[
            StepDefinition(
                service_class=TextEmbedProcessor,
                resource_type=ResourceType.CPU,
                config=config,
            ),
        ],
    )
    return {"steps": build_pipeline_steps(pipeline)}
