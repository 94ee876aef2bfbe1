from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps

from .manifest import MyParams, metadata
from .processors.core import MyConfig, MyProcessor


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    params = MyParams(**(extractor_request.extractor_config.parameters or {}))
    config = MyConfig(threshold=params.threshold, model_size=params.model_size)
    pipeline = PipelineDefinition(
        name=metadata["feature_extractor_name"],
        version=metadata["version"],
        steps=[StepDefinition(service_class=MyProcessor, resource_type=ResourceType.CPU, config=config)],
    )
    steps = build_pipeline_steps(pipeline)
    return {"steps": steps}
