from dataclasses import dataclass

import pandas as pd


@dataclass
class WhisperConfig:
    output_column: str = "transcription"
    beam_size: int = 5


@dataclass
class EmbedConfig:
    text_column: str = "transcription"
    output_column_name: str = "audio_transcribe_v1_embedding"


class TextAsTranscription:
    """Text rows, and the query texts of retrievers, are embedded as they are: their words are the text."""

    def __init__(self, config: EmbedConfig, progress_actor=None):
        self.config = config

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        # For text blobs 'data' holds the raw string.
        batch[self.config.text_column] = batch["data"].fillna("")
        return batch
