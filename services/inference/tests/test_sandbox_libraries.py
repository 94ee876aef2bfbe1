"""The libraries the scanner allows plugins to import are installed where plugins run, and work
inside the sandbox: a plugin passes the scan with them and uses each on its frame."""

from __future__ import annotations

import pytest
from inference_twins import frame, toy_archive

from featurebus.common.frames import from_parquet
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.scan import scan_archive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "libs"
version = "1.0.0"
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 4, "distance_metric": "cosine"}]
"""
PIPELINE = """
import io

import cv2
import imageio.v3 as iio
import librosa
import numpy as np
import polars as pl
import soundfile as sf
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps


class UseLibraries:
    def __init__(self, config=None):
        pass

    def __call__(self, batch):
        words = pl.DataFrame({"t": batch["data"].tolist()}).select(pl.col("t").str.split(" ").list.len())["t"]
        red = np.zeros((8, 8, 3), np.uint8)
        red[:, :, 2] = 255  # BGR, as OpenCV writes it
        ok, png = cv2.imencode(".png", red)
        rgb = iio.imread(png.tobytes(), extension=".png")
        tone = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
        wav = io.BytesIO()
        sf.write(wav, tone, 16000, format="WAV")
        wav.seek(0)
        samples, rate = sf.read(wav, dtype="float32")
        pitch = float(np.median(librosa.yin(samples, fmin=100, fmax=1000, sr=rate)))
        batch["vec"] = [[float(n), float(rgb[0, 0, 0]), pitch / 440.0, 1.0] for n in words.to_list()]
        return batch


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=UseLibraries)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="libs", version="1.0.0", steps=steps))}
"""


def test_the_allowed_libraries_pass_the_scan_and_run_in_the_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    archive = toy_archive(PIPELINE, MANIFEST)
    report = scan_archive(archive)
    assert report.passed, report.lines()
    config = SandboxConfig(frame_cpu_seconds=120)  # the default address-space limit, as deployed
    worker = SandboxedWorker("libs_1_0_0", archive, None, str(tmp_path_factory.mktemp("work")), None, config)
    try:
        assert worker.load_error is None, worker.load_error
        output = worker.process(frame(["one two three", "four"]))
    finally:
        worker.close()
    assert output.failures == [], [f.message for f in output.failures]
    assert output.vectors_parquet is not None
    vectors = [list(v) for v in from_parquet(output.vectors_parquet)["vec"]]
    assert [v[:2] for v in vectors] == [[3.0, 255.0], [1.0, 255.0]]  # polars; OpenCV → imageio
    assert all(abs(v[2] - 1.0) < 0.02 for v in vectors)  # soundfile → librosa hears 440 Hz


# The guide's image classifier's model code ("Example: Image Classification Plugin"): torchvision's
# mobilenet_v2 and its transforms, over the CPU torch the workers run (weights left out: a worker
# has no download.pytorch.org to fetch them from).
TORCHVISION_PIPELINE = """
import numpy as np
import torch
from PIL import Image
from torchvision import models, transforms
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps


class Classify:
    def __init__(self, config=None):
        torch.manual_seed(0)
        self._model = models.mobilenet_v2(weights=None)
        self._model.eval()
        self._preprocess = transforms.Compose([
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])

    def __call__(self, batch):
        images = [Image.fromarray(np.full((300, 400, 3), 40 * len(t), np.uint8)) for t in batch["data"]]
        with torch.no_grad():
            outputs = self._model(torch.stack([self._preprocess(i) for i in images]))
        batch["vec"] = [o.tolist()[:4] for o in outputs]
        batch["labels"] = [[str(c) for c in torch.topk(o, 5).indices.tolist()] for o in outputs]
        return batch


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Classify)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="libs", version="1.0.0", steps=steps))}
"""


def test_torchvisions_models_and_transforms_run_in_the_sandbox(tmp_path_factory: pytest.TempPathFactory) -> None:
    archive = toy_archive(TORCHVISION_PIPELINE, MANIFEST)
    assert scan_archive(archive).passed
    worker = SandboxedWorker(
        "libs_1_0_0", archive, None, str(tmp_path_factory.mktemp("work")), None, SandboxConfig(frame_cpu_seconds=120)
    )
    try:
        assert worker.load_error is None, worker.load_error
        output = worker.process(frame(["a", "bb"]))
    finally:
        worker.close()
    assert output.failures == [], [f.message for f in output.failures]
    rows = from_parquet(output.vectors_parquet or b"")
    assert len(rows) == 2 and all(len(v) == 4 for v in rows["vec"])
    # The two images differ, and so do the network's outputs for them.
    assert list(rows["vec"][0]) != list(rows["vec"][1])
