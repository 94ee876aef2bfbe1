import os
from dataclasses import dataclass
from urllib.parse import urlparse

import pandas as pd
from PIL import Image
from shared.inference.registry import get_batch_service
from shared.plugins import RowError, open_asset
from shared.plugins.sdk import parallel_io

FEATURE = "image_features_v1_embedding"
# JPEGs decode straight to a reduced scale no smaller than this: the model sees 224x224 anyway.
DECODE_SIZE = (448, 448)


@dataclass
class FeaturesConfig:
    model_id: str = "efficientnet-lite0"
    download_workers: int = 8
    encode_batch_size: int = 32


@dataclass
class LoadedImage:
    image: Image.Image
    width: int  # of the stored picture, before any reduced-scale decoding
    height: int


def load_image(url: str):
    """The decoded picture at ``url``, or a RowError naming the URL when it cannot be read."""
    try:
        with open_asset(url, suffix=os.path.splitext(urlparse(url).path)[1]) as path, Image.open(path) as img:
            width, height = img.size
            img.draft("RGB", DECODE_SIZE)
            return LoadedImage(img.convert("RGB"), width, height)
    except Exception as exc:
        return RowError.unreadable_asset(url, exc)


class ImageFeaturesProcessor:
    """Batch processor: downloads and decodes every image in parallel, then one batched model call."""

    def __init__(self, config: FeaturesConfig, progress_actor=None):
        self.config = config
        self._model = None  # loaded on the first batch, once per actor

    def _ensure_model_loaded(self):
        if self._model is None:
            EfficientNetBatch = get_batch_service(self.config.model_id)
            self._model = EfficientNetBatch(
                {
                    "image_column": "image",
                    "output_column_name": FEATURE,
                    "encode_batch_size": self.config.encode_batch_size,
                }
            )

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        self._ensure_model_loaded()
        # For binary blobs 'data' holds an s3:// URL (a local path or file:// URL in local tests).
        urls = batch["data"].fillna("").astype(str).tolist()
        loaded = parallel_io(items=urls, process_fn=load_image, max_workers=self.config.download_workers)
        results = [loaded[i] for i in range(len(urls))]
        readable = [i for i, result in enumerate(results) if isinstance(result, LoadedImage)]
        sizes = {i: (results[i].width, results[i].height) for i in readable}

        # An unreadable row keeps its RowError in place of a vector: the host fails that row alone.
        vectors = list(results)
        if readable:
            images = pd.DataFrame({"image": [results[i].image for i in readable]})
            embedded = self._model(images)[FEATURE].tolist()
            for i, vector in zip(readable, embedded, strict=True):
                vectors[i] = vector
        batch[FEATURE] = vectors
        batch["image_width"] = pd.array([sizes.get(i, (None, None))[0] for i in range(len(urls))], dtype="Int64")
        batch["image_height"] = pd.array([sizes.get(i, (None, None))[1] for i in range(len(urls))], dtype="Int64")
        return batch
