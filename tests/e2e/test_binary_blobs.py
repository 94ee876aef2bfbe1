"""Images through presigned uploads, read by a plugin with open_asset, searched by colour.

Two PNGs are uploaded (POST .../uploads → PUT presigned_url), referenced from objects, and a tiny
plugin turns each image into its mean RGB (3-d); a retriever query "r,g,b" goes through the same
step as a text row. A truncated PNG and a blob whose bytes vanished from the object store fail
their rows only.
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurebus.common.objectstore import ObjectStore, parse_s3_uri
from featurebus.common.settings import CommonSettings

from ._client import Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURE = "mean_rgb_v1"
RED, BLUE = (230, 40, 30), (20, 60, 210)

MANIFEST = f'''
feature_extractor_name = "mean_rgb"
version = "1.0.0"
description = "The mean colour of an image, as a 3-d vector"
supported_input_types = ["image"]
features = [
    {{"feature_type": "embedding", "feature_name": "{FEATURE}", "embedding_dim": 3, "distance_metric": "cosine"}},
]
# Frames of several rows: an unreadable image must fail its own row, not its frame.
compute_profile = {{"resource_type": "cpu", "batch_size": 4, "max_concurrency": 1}}
'''

PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps

from .processors.core import MeanRGB


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=MeanRGB, resource_type=ResourceType.CPU)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="mean_rgb", version="1.0.0", steps=steps))}
"""

PROCESSOR = f"""
import numpy as np
import pandas as pd
from PIL import Image
from shared.plugins import RowError, open_asset


class MeanRGB:
    def __init__(self, config=None):
        self.config = config

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = batch[["data", "blob_type", "mime_type", "size_bytes", "blob_property"]].to_dict("records")
        vectors = [self._vector(row) for row in rows]
        batch["{FEATURE}"] = vectors
        batch["mean_rgb"] = [[round(v * 255) for v in vector] if isinstance(vector, list) else None for vector in vectors]
        batch["seen"] = [
            {{
                "scheme": str(row["data"]).split("://")[0],
                "blob_type": row["blob_type"],
                "mime_type": row["mime_type"],
                "size_bytes": int(row["size_bytes"]),
                "blob_property": row["blob_property"],
            }}
            for row in rows
        ]
        return batch

    def _vector(self, row):
        if row["blob_type"] == "text":  # a retriever's query: "r,g,b"
            return [float(v) / 255.0 for v in row["data"].split(",")]
        try:
            with open_asset(row["data"], suffix=".png") as path:
                with Image.open(path) as image:
                    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        except Exception as exc:
            return RowError.unreadable_asset(row["data"], exc)
        return (pixels.reshape(-1, 3).mean(axis=0) / 255.0).tolist()
"""


def png(rgb: tuple[int, int, int] | None = None) -> bytes:
    from PIL import Image

    if rgb is not None:
        image = Image.new("RGB", (8, 8), rgb)
    else:  # a gradient: enough compressed data to cut in half
        image = Image.new("RGB", (32, 32))
        image.putdata([(x * 8 % 256, y * 8 % 256, (x * y) % 256) for y in range(32) for x in range(32)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def plugin_archive(tmp: Path) -> bytes:
    root = tmp / "mean_rgb"
    (root / "processors").mkdir(parents=True)
    for rel, text in {
        "manifest.py": MANIFEST,
        "pipeline.py": PIPELINE,
        "__init__.py": "",
        "processors/__init__.py": "",
        "processors/core.py": PROCESSOR,
    }.items():
        (root / rel).write_text(text.lstrip())
    return zip_plugin(root)


def upload_image(api: Api, ns: str, bucket: str, data: bytes, filename: str) -> str:
    up = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket}/uploads",
        json={"filename": filename, "content_type": "image/png", "size_bytes": len(data)},
    )
    put = httpx.put(up["presigned_url"], content=data, timeout=60)
    assert put.status_code == 200, put.text
    return str(up["upload_id"])


def add_image(api: Api, ns: str, bucket: str, upload_id: str) -> dict[str, Any]:
    return dict(
        api.call(
            "POST",
            f"/v1/namespaces/{ns}/buckets/{bucket}/objects",
            json={"blobs": [{"property": "image", "type": "image", "upload_id": upload_id}]},
        )
    )


def trigger(api: Api, ns: str, bucket: str, col: str) -> tuple[str, dict[str, Any]]:
    batch = api.call("POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]})
    return batch["batch_id"], api.wait_batch(ns, bucket, batch["batch_id"], timeout=240)


@pytest.fixture(scope="module")
def images(platform, api: Api, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"blobs-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "mean_rgb", "1.0.0", plugin_archive(tmp_path_factory.mktemp("plugin")))
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "photos", "bucket_schema": {"properties": {"image": {"type": "image", "required": True}}}},
    )["bucket_id"]
    red, blue = png(RED), png(BLUE)
    objects = {
        "red": add_image(api, ns, bucket, upload_image(api, ns, bucket, red, "red.png")),
        "blue": add_image(api, ns, bucket, upload_image(api, ns, bucket, blue, "blue.png")),
    }
    col = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "photos-colour",
            "feature_extractors": [{"feature_extractor_name": "mean_rgb", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    batch_id, done = trigger(api, ns, bucket, col)
    retriever = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={
            "name": "by-colour",
            "collection_identifiers": [col],
            "stages": [
                {
                    "stage_name": "vector_search",
                    "stage_type": "filter",
                    "config": {
                        "stage_id": "feature_search",
                        "parameters": {
                            "searches": [
                                {"feature_uri": f"mixpeek://mean_rgb@1.0.0/{FEATURE}", "query": "{{INPUT.rgb}}"}
                            ]
                        },
                    },
                }
            ],
        },
    )["retriever_id"]
    sizes = {"red": len(red), "blue": len(blue)}
    return {"ns": ns, "bucket": bucket, "col": col, "objects": objects, "sizes": sizes, "batch": done,
            "batch_id": batch_id, "retriever": retriever}  # fmt: skip


def search(api: Api, images: dict[str, Any], rgb: tuple[int, int, int]) -> list[dict[str, Any]]:
    body = {"input": {"rgb": ",".join(str(v) for v in rgb)}}
    return list(
        api.call("POST", f"/v1/namespaces/{images['ns']}/retrievers/{images['retriever']}/execute", json=body)[
            "results"
        ]
    )


def test_both_images_are_read_and_written(images: dict[str, Any]) -> None:
    batch = images["batch"]
    assert batch["status"] == "COMPLETED", batch
    assert (batch["rows_in"], batch["rows_embedded"], batch["rows_written"], batch["rows_failed"]) == (2, 2, 2, 0)


def test_search_by_colour_finds_the_image_of_that_colour(api: Api, images: dict[str, Any]) -> None:
    for name, colour in (("red", RED), ("blue", BLUE)):
        results = search(api, images, colour)
        assert len(results) == 2, results
        top = results[0]
        assert top["object_id"] == images["objects"][name]["object_id"], (name, results)
        assert top["score"] > 0.99 > results[1]["score"]
        assert top["mean_rgb"] == list(colour)  # the vector the plugin computed from the image's pixels
        # The plugin got the guide's columns for a binary row: an s3:// URL, never bytes.
        assert top["seen"] == {
            "scheme": "s3",
            "blob_type": "image",
            "mime_type": "image/png",
            "size_bytes": images["sizes"][name],
            "blob_property": "image",
        }
        assert top["mime_type"] == "image/png" and top["blob_type"] == "image"


def test_an_image_query_is_embedded_by_the_same_step_as_the_stored_images(api: Api, images: dict[str, Any]) -> None:
    """Query by an image: by an upload of the namespace, or by the bytes in the request; the
    plugin reads it as it reads a stored image (an s3:// URL, in the sandbox)."""
    path = f"/v1/namespaces/{images['ns']}/retrievers/{images['retriever']}/execute"
    reddish = upload_image(api, images["ns"], images["bucket"], png((220, 50, 40)), "query.png")
    bluish = base64.b64encode(png((30, 70, 200))).decode()
    for query, name in (({"upload_id": reddish}, "red"), ({"base64": bluish, "mime_type": "image/png"}, "blue")):
        results = api.call("POST", path, json={"input": {"rgb": query}})["results"]
        assert results[0]["object_id"] == images["objects"][name]["object_id"], (name, results)
        assert results[0]["score"] > 0.99 > results[1]["score"]
    other = api.namespace(f"other-{uuid.uuid4().hex[:6]}")
    theirs = api.call(
        "POST",
        f"/v1/namespaces/{other}/buckets",
        json={"name": "p", "bucket_schema": {"properties": {"image": {"type": "image"}}}},
    )["bucket_id"]
    foreign = upload_image(api, other, theirs, png(RED), "theirs.png")
    refused = api.call("POST", path, expect=422, json={"input": {"rgb": {"upload_id": foreign}}})
    assert f"query.upload_id {foreign!r} is not an upload of this namespace" in str(refused)
    text = base64.b64encode(b"plain words").decode()
    refused = api.call("POST", path, expect=422, json={"input": {"rgb": {"base64": text, "mime_type": "text/plain"}}})
    assert "a text/plain blob cannot be a query" in str(refused)


def test_unreadable_images_fail_their_own_rows(platform, api: Api, images: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    ns, bucket = images["ns"], images["bucket"]
    whole = png()
    truncated = add_image(api, ns, bucket, upload_image(api, ns, bucket, whole[: len(whole) // 2], "cut.png"))
    vanished = add_image(api, ns, bucket, upload_image(api, ns, bucket, png((0, 200, 0)), "gone.png"))
    env = platform.stack.env()
    settings = CommonSettings(**{k.removeprefix("FEATUREBUS_").lower(): v for k, v in env.items()})

    async def delete(uri: str) -> None:
        store = ObjectStore(settings)
        try:
            await store.delete(parse_s3_uri(uri)[1])
        finally:
            await store.close()

    asyncio.run(delete(vanished["blobs"][0]["uri"]))

    batch_id, done = trigger(api, ns, bucket, images["col"])
    assert done["status"] == "COMPLETED_WITH_ERRORS", done
    assert (done["rows_in"], done["rows_written"], done["rows_failed"]) == (4, 2, 2), done
    failed = api.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/{batch_id}/failed-documents")["results"]
    by_object = {row["object_id"]: row for row in failed}
    assert set(by_object) == {truncated["object_id"], vanished["object_id"]}, failed
    assert {row["reason"] for row in failed} == {"unreadable_asset"}, failed
    assert "truncated" in by_object[truncated["object_id"]]["message"], failed
    gone = by_object[vanished["object_id"]]["message"]
    assert "ObjectMissing" in gone or "NoSuchKey" in gone or "not found" in gone.lower(), failed
    # The images that could be read are still found, once each.
    assert [r["object_id"] for r in search(api, images, RED)] == [
        images["objects"]["red"]["object_id"],
        images["objects"]["blue"]["object_id"],
    ]
