"""The image plugin through the plugin host, as a worker runs it (the guide's Local Testing).

Pictures are drawn with PIL here; ``data`` holds local paths and file:// URLs, which
``download_asset`` resolves as it resolves s3:// URLs in a worker.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFilter

from featurebus.common.events import ReasonCode
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime import HostResult, PluginHost

PLUGIN = Path(__file__).resolve().parents[1]
FEATURE = "image_features_v1_embedding"


def balloons(size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """A sky gradient with a few bright balloons on strings."""
    w, h = size
    sky = np.linspace([40, 90, 200], [170, 210, 250], h).astype(np.uint8)
    img = Image.fromarray(np.repeat(sky[:, None, :], w, axis=1))
    draw = ImageDraw.Draw(img)
    for cx, cy, r, colour in [(0.3, 0.4, 0.12, "red"), (0.55, 0.3, 0.1, "yellow"), (0.7, 0.5, 0.13, "orange")]:
        x, y, rr = cx * w, cy * h, r * min(w, h)
        draw.ellipse((x - rr, y - 1.2 * rr, x + rr, y + 1.2 * rr), fill=colour)
        draw.line((x, y + 1.2 * rr, x + 0.1 * w, h), fill="white", width=max(2, w // 300))
    return img


def circuit(size: tuple[int, int] = (800, 600)) -> Image.Image:
    """A dark green board with a grid of thin copper traces and chips: another kind of picture."""
    w, h = size
    img = Image.new("RGB", size, (10, 60, 20))
    draw = ImageDraw.Draw(img)
    for x in range(0, w, 24):
        draw.line((x, 0, x, h), fill=(200, 150, 60), width=2)
    for y in range(0, h, 36):
        draw.line((0, y, w, y), fill=(200, 150, 60), width=2)
    for x in range(40, w - 80, 160):
        for y in range(40, h - 60, 140):
            draw.rectangle((x, y, x + 70, y + 50), fill=(20, 20, 20))
    return img


def row(i: int, data: str, mime: str) -> dict[str, object]:
    base: dict[str, object] = {c: f"{c}_{i}" for c, kind in FRAME_COLUMNS.items() if kind == "str"}
    base.update(data=data, blob_type=mime.split("/")[0], mime_type=mime, size_bytes=0)
    return base


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost.load(PLUGIN, plugin_id="image_features_1_0_0")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pictures")
    original = balloons()
    w, h = original.size
    paths = {
        "balloons": root / "balloons.jpg",  # large JPEG: decoded at a reduced scale
        "balloons_crop": root / "balloons_crop.png",  # the central 70%, downscaled
        "balloons_blur": root / "balloons_blur.webp",  # blurred, smaller, another codec
        "circuit": root / "circuit.png",
        "circuit_crop": root / "circuit_crop.jpg",
    }
    original.save(paths["balloons"], quality=90)
    original.crop((int(0.15 * w), int(0.15 * h), int(0.85 * w), int(0.85 * h))).resize((560, 420)).save(
        paths["balloons_crop"]
    )
    original.resize((640, 480)).filter(ImageFilter.GaussianBlur(3)).save(paths["balloons_blur"], quality=70)
    board = circuit()
    board.save(paths["circuit"])
    board.crop((100, 50, 700, 500)).save(paths["circuit_crop"], quality=80)
    return {name: str(path) for name, path in paths.items()}


def run(host: PluginHost, rows: list[tuple[str, str]]) -> HostResult:
    return host.run(pd.DataFrame([row(i, data, mime) for i, (data, mime) in enumerate(rows)]))


def vectors_by_document(result: HostResult) -> dict[str, np.ndarray]:
    return {
        doc: np.asarray(vec) for doc, vec in zip(result.vectors["document_id"], result.vectors[FEATURE], strict=True)
    }


@pytest.mark.slow
def test_pictures_become_1280_d_unit_vectors_and_variants_stay_close(
    host: PluginHost, pictures: dict[str, str]
) -> None:
    names = ["balloons", "balloons_crop", "balloons_blur", "circuit", "circuit_crop"]
    mimes = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}
    rows = [(pictures[n], mimes[Path(pictures[n]).suffix]) for n in names]
    rows[1] = ("file://" + rows[1][0], rows[1][1])  # a file:// URL resolves like a path
    result = run(host, rows)

    assert result.failures == [] and result.rows_embedded == result.rows_in == 5
    by_doc = vectors_by_document(result)
    v = {name: by_doc[f"document_id_{i}"] for i, name in enumerate(names)}
    for vector in v.values():
        assert vector.shape == (1280,) and np.isfinite(vector).all()
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
    for variant in ("balloons_crop", "balloons_blur"):
        assert v["balloons"] @ v[variant] > v["balloons"] @ v["circuit"] + 0.1
        assert v["balloons"] @ v[variant] > v[variant] @ v["circuit_crop"] + 0.1
    assert v["circuit"] @ v["circuit_crop"] > v["circuit"] @ v["balloons"] + 0.1

    payload = json.loads(result.vectors.at[0, "payload"])
    assert (payload["image_width"], payload["image_height"]) == (1600, 1200)  # the stored size, not the decoded one


@pytest.mark.slow
def test_an_unreadable_image_fails_only_its_row(host: PluginHost, pictures: dict[str, str], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(pictures["balloons"]).read_bytes()[:2000])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("these are not pixels")
    missing = f"file://{tmp_path}/missing.jpg"
    result = run(
        host,
        [
            (pictures["circuit"], "image/png"),
            (str(truncated), "image/jpeg"),
            (str(not_an_image), "image/png"),
            (missing, "image/jpeg"),
            (pictures["balloons_crop"], "image/png"),
        ],
    )

    assert result.rows_in == 5 and result.rows_embedded == 2
    assert sorted(result.vectors["document_id"]) == ["document_id_0", "document_id_4"]
    failed = {f.document_id: f for f in result.failures}
    assert sorted(failed) == ["document_id_1", "document_id_2", "document_id_3"]
    for doc, url in [
        ("document_id_1", str(truncated)),
        ("document_id_2", str(not_an_image)),
        ("document_id_3", missing),
    ]:
        assert failed[doc].reason is ReasonCode.UNREADABLE_ASSET
        assert url in failed[doc].message


@pytest.mark.slow
def test_rows_that_are_not_images_are_skipped_by_the_is_image_condition(
    host: PluginHost, pictures: dict[str, str]
) -> None:
    result = run(host, [("a caption, not a picture", "text/plain"), (pictures["circuit"], "image/png")])
    assert result.vectors["document_id"].tolist() == ["document_id_1"]
    [skipped] = result.failures
    assert skipped.document_id == "document_id_0" and skipped.reason is ReasonCode.NULL_OUTPUT


@pytest.mark.slow
def test_the_model_loads_lazily_once_per_actor(pictures: dict[str, str]) -> None:
    host = PluginHost.load(PLUGIN, plugin_id="image_features_1_0_0")
    [(processor, _)] = host.steps
    assert processor._model is None  # nothing loaded before the first batch
    run(host, [(pictures["circuit"], "image/png")])
    service, network = processor._model, processor._model._model
    first = run(host, [(pictures["balloons_crop"], "image/png")])
    second = run(host, [(pictures["balloons_crop"], "image/png")])
    assert processor._model is service and service._model is network and host.model_loads == 1
    assert np.allclose(first.vectors.at[0, FEATURE], second.vectors.at[0, FEATURE], atol=1e-6)
