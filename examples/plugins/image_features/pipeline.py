from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)

from .manifest import feature_extractor_name, version
from .processors.features import FeaturesConfig, ImageFeaturesProcessor


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    """Build the extraction pipeline: one CPU step over the image rows of the frame."""
    params = extractor_request.extractor_config.parameters or {}
    config = FeaturesConfig(
        download_workers=int(params.get("download_workers", 8)),
        encode_batch_size=int(params.get("encode_batch_size", 32)),
    )
    pipeline = PipelineDefinition(
        name=feature_extractor_name,
        version=version,
        steps=[
            StepDefinition(
                service_class=ImageFeaturesProcessor,
                resource_type=ResourceType.CPU,
                condition=RowCondition.IS_IMAGE,
                config=config,
            ),
        ],
    )
    return {"steps": build_pipeline_steps(pipeline)}
