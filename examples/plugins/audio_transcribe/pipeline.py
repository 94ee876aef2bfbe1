from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    RowCondition,
    StepDefinition,
    build_pipeline_steps,
)
from shared.inference.registry import get_batch_service

from .manifest import feature_extractor_name, features, version
from .processors.core import EmbedConfig, TextAsTranscription, WhisperConfig


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    """Transcribe the audio rows, then embed every transcription (the guide's multi-stage pipeline)."""
    params = extractor_request.extractor_config.parameters or {}

    # Built-in services; the KeyError of an unknown id lists the ones this installation has.
    WhisperBatch = get_batch_service(params.get("whisper_model", "openai/whisper-tiny.en"))
    MiniLMBatch = get_batch_service("sentence-transformers/all-MiniLM-L6-v2")

    embed_config = EmbedConfig(text_column="transcription", output_column_name=features[0]["feature_name"])
    pipeline = PipelineDefinition(
        name=feature_extractor_name,
        version=version,
        steps=[
            # Step 1: transcribe audio (other rows are skipped by the condition)
            StepDefinition(
                service_class=WhisperBatch,
                resource_type=ResourceType.CPU,
                condition=RowCondition.IS_AUDIO,
                config=WhisperConfig(output_column="transcription", beam_size=int(params.get("beam_size", 5))),
            ),
            # Text rows and query texts go to step 2 as they are
            StepDefinition(
                service_class=TextAsTranscription,
                resource_type=ResourceType.CPU,
                condition=RowCondition.IS_TEXT,
                config=embed_config,
            ),
            # Step 2: embed the transcription; a row with none (an image, say) gets no vector
            StepDefinition(
                service_class=MiniLMBatch,
                resource_type=ResourceType.CPU,
                config=embed_config,
            ),
        ],
    )
    return {"steps": build_pipeline_steps(pipeline)}
