"""Binary blob uploads through the registry's REST API, against real MongoDB, Kafka and S3 servers.

Presigned URL → PUT → an object that references the upload_id; every bad input is a 422 naming the
field and the fix, and a rejected object changes nothing (its uploads stay usable).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from registry_blob_samples import PDF, png

from featurebus.common.events import ObjectsIngested
from featurebus.common.objectstore import ObjectStore
from featurebus.registry.config import RegistrySettings
from featurebus.registry.main import build_app

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MAX = 4096
SCHEMA = {
    "properties": {
        "photo": {"type": "image"},
        "voice": {"type": "audio"},
        "paper": {"type": "pdf"},
        "caption": {"type": "text"},
    }
}


@dataclass
class Registry:
    http: httpx.AsyncClient
    settings: RegistrySettings
    store: ObjectStore

    async def call(self, method: str, path: str, expect: int, **kw: Any) -> Any:
        response = await self.http.request(method, path, **kw)
        assert response.status_code == expect, f"{method} {path} → {response.status_code}: {response.text}"
        return response.json()

    async def bucket(self, ns: str, schema: dict[str, Any] = SCHEMA) -> str:
        body = {"name": f"b-{uuid.uuid4().hex[:6]}", "bucket_schema": schema}
        return str((await self.call("POST", f"/v1/namespaces/{ns}/buckets", 201, json=body))["bucket_id"])

    async def upload(self, ns: str, bucket: str, expect: int = 201, **body: Any) -> Any:
        return await self.call("POST", f"/v1/namespaces/{ns}/buckets/{bucket}/uploads", expect, json=body)

    async def put(self, upload: dict[str, Any], data: bytes) -> None:
        async with httpx.AsyncClient() as raw:
            response = await raw.put(upload["presigned_url"], content=data)
        assert response.status_code == 200, response.text

    async def uploaded(self, ns: str, bucket: str, data: bytes, filename: str, content_type: str) -> str:
        up = await self.upload(ns, bucket, filename=filename, content_type=content_type, size_bytes=len(data))
        await self.put(up, data)
        return str(up["upload_id"])

    async def add(self, ns: str, bucket: str, blobs: list[dict[str, Any]], expect: int = 201) -> Any:
        return await self.call("POST", f"/v1/namespaces/{ns}/buckets/{bucket}/objects", expect, json={"blobs": blobs})

    async def object_count(self, ns: str, bucket: str) -> int:
        return int((await self.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket}", 200))["object_count"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registry(local_stack: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Registry]:
    run = uuid.uuid4().hex[:8]
    env = {k.removeprefix("FEATUREBUS_").lower(): v for k, v in local_stack.env().items()}
    key = f"fb_test_{run}"
    settings = RegistrySettings(
        **{
            **env,
            "topic_prefix": f"upl{run}.",
            "mongo_db": f"registry_uploads_{run}",
            "admin_api_key": key,
            "data_dir": Path(tmp_path_factory.mktemp("registry")),
            "max_blob_bytes": MAX,
        }
    )
    app = build_app(settings)
    store = ObjectStore(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://registry", headers={"Authorization": f"Bearer {key}"}
        ) as http:
            yield Registry(http, settings, store)
    await store.close()


async def namespace(registry: Registry) -> str:
    body = {"namespace_name": f"uploads-{uuid.uuid4().hex[:6]}"}
    return str((await registry.call("POST", "/v1/namespaces", 201, json=body))["namespace_id"])


async def ingested(registry: Registry, bucket: str, count: int) -> list[ObjectsIngested]:
    """The ObjectsIngested events the registry published for ``bucket`` (at least ``count``)."""
    consumer = AIOKafkaConsumer(
        registry.settings.topic_prefix + "objects.ingested",
        bootstrap_servers=registry.settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[ObjectsIngested] = []
    try:
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                events = (ObjectsIngested.model_validate_json(m.value) for m in messages if m.value)
                found.extend(e for e in events if e.bucket_id == bucket)
            if len(found) >= count:
                break
    finally:
        await consumer.stop()
    return found


async def test_upload_put_and_reference_the_bytes_from_objects(registry: Registry) -> None:
    ns = await namespace(registry)
    bucket = await registry.bucket(ns)
    image = png(rgb=(200, 20, 20))
    digest = hashlib.sha256(image).hexdigest()
    up = await registry.upload(
        ns, bucket, filename="red square.png", content_type="image/png", size_bytes=len(image), sha256=digest
    )
    assert up["upload_id"].startswith("upl_") and up["method"] == "PUT" and up["status"] == "pending"
    assert up["presigned_url"].startswith("http://127.0.0.1:") and up["expires_at"] and up["max_bytes"] == MAX
    assert (up["filename"], up["content_type"], up["size_bytes"], up["sha256"]) == (
        "red square.png",
        "image/png",
        len(image),
        digest,
    )
    status_path = f"/v1/namespaces/{ns}/buckets/{bucket}/uploads/{up['upload_id']}"
    assert (await registry.call("GET", status_path, 200))["received_bytes"] == 0
    await registry.put(up, image)
    assert (await registry.call("GET", status_path, 200))["received_bytes"] == len(image)

    first = await registry.add(
        ns,
        bucket,
        [
            {"property": "photo", "type": "image", "upload_id": up["upload_id"]},
            {"property": "caption", "type": "text", "data": "a red square"},
        ],
    )
    photo = first["blobs"][0]
    namespace_doc = await registry.call("GET", f"/v1/namespaces/{ns}", 200)
    key = f"blobs/{namespace_doc['org_id']}/{ns}/{bucket}/{up['upload_id']}/red_square.png"
    assert photo == {
        "blob_id": photo["blob_id"],
        "property": "photo",
        "type": "image",
        "uri": registry.store.uri(key),
        "mime_type": "image/png",
        "size_bytes": len(image),
        "sha256": digest,
    }
    assert await registry.store.get_bytes(photo["uri"], digest) == image
    assert await registry.store.size(f"uploads/blobs/{up['upload_id']}") is None  # the staging copy is gone

    # A PUT to the still-valid URL after verification changes nothing that was accepted.
    await registry.put(up, png(rgb=(0, 0, 255)))
    second = await registry.add(ns, bucket, [{"property": "photo", "upload_id": up["upload_id"]}])
    assert second["blobs"][0]["uri"] == photo["uri"] and second["blobs"][0]["sha256"] == digest
    assert await registry.store.get_bytes(photo["uri"], digest) == image
    verified = await registry.call("GET", status_path, 200)
    assert (verified["status"], verified["uri"], verified["verified_sha256"]) == ("verified", photo["uri"], digest)
    assert await registry.object_count(ns, bucket) == 2

    events = await ingested(registry, bucket, 2)
    blobs = {e.objects[0].object_id: e.objects[0].blobs for e in events}
    assert set(blobs) == {first["object_id"], second["object_id"]}
    event_photo = next(b for b in blobs[first["object_id"]] if b.property == "photo")
    assert (event_photo.type, event_photo.uri, event_photo.mime_type, event_photo.size_bytes, event_photo.data) == (
        "image",
        photo["uri"],
        "image/png",
        len(image),
        None,
    )


async def test_pdf_and_audio_uploads_and_the_confirm_call(registry: Registry) -> None:
    ns = await namespace(registry)
    bucket = await registry.bucket(ns)
    paper = await registry.uploaded(ns, bucket, PDF, "paper.pdf", "application/pdf")
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40
    voice = await registry.uploaded(ns, bucket, wav, "hello.wav", "audio/x-wav")
    confirmed = await registry.call("POST", f"/v1/namespaces/{ns}/buckets/{bucket}/uploads/{voice}/confirm", 200)
    assert (confirmed["status"], confirmed["mime_type"]) == ("verified", "audio/wav")  # what the bytes are
    out = await registry.add(
        ns, bucket, [{"property": "paper", "upload_id": paper}, {"property": "voice", "upload_id": voice}]
    )
    assert [(b["type"], b["mime_type"], b["size_bytes"]) for b in out["blobs"]] == [
        ("pdf", "application/pdf", len(PDF)),
        ("audio", "audio/wav", len(wav)),
    ]


async def problem(response: httpx.Response, needle: str, hint: str | None = None) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert needle in body["detail"], body
    assert body.get("hint"), body
    if hint:
        assert hint in body["hint"], body


async def test_every_bad_upload_request_is_a_422_naming_the_field(registry: Registry) -> None:
    ns = await namespace(registry)
    bucket = await registry.bucket(ns, {"properties": {"photo": {"type": "image"}}})
    path = f"/v1/namespaces/{ns}/buckets/{bucket}/uploads"
    ok = {"filename": "a.png", "content_type": "image/png", "size_bytes": 10}
    cases = [
        ({**ok, "content_type": "text/plain"}, "content_type 'text/plain' is not an uploadable blob type", "inline"),
        ({**ok, "content_type": "application/zip"}, "accepted: image/*, audio/*, video/*, application/pdf", None),
        ({**ok, "content_type": "audio/mpeg"}, "this bucket has no audio property", '"type": "audio"'),
        ({**ok, "size_bytes": 0}, "size_bytes must be", None),
        ({**ok, "size_bytes": MAX + 1}, f"size_bytes {MAX + 1} exceeds the limit of {MAX}", "MAX_BLOB_BYTES"),
        ({**ok, "sha256": "abc"}, "sha256 must be 64 hex digits", None),
        ({"content_type": "image/png", "size_bytes": 10}, "filename", None),
        ({"filename": "a.png", "size_bytes": 10}, "content_type", None),
        ({"filename": "a.png", "content_type": "image/png"}, "size_bytes", None),
    ]
    for body, needle, hint in cases:
        await problem(await registry.http.post(path, json=body), needle, hint)
    other = await registry.http.post(f"/v1/namespaces/{ns}/buckets/bkt_nope/uploads", json=ok)
    assert other.status_code == 404, other.text
    assert (await registry.http.post(path, json={**ok, "file_size_bytes": 10, "size_bytes": None})).status_code == 422


async def test_bad_references_are_422s_and_lose_nothing_already_accepted(registry: Registry) -> None:
    ns = await namespace(registry)
    bucket = await registry.bucket(ns)
    elsewhere = await registry.bucket(ns)
    image = png()
    good = await registry.uploaded(ns, bucket, image, "ok.png", "image/png")
    await registry.add(ns, bucket, [{"property": "photo", "upload_id": good}])
    accepted = await registry.object_count(ns, bucket)

    async def rejected(blobs: list[dict[str, Any]], needle: str, hint: str | None = None) -> None:
        await problem(
            await registry.http.post(f"/v1/namespaces/{ns}/buckets/{bucket}/objects", json={"blobs": blobs}),
            needle,
            hint,
        )

    never_put = (await registry.upload(ns, bucket, filename="x.png", content_type="image/png", size_bytes=10))[
        "upload_id"
    ]
    await rejected([{"property": "photo", "upload_id": never_put}], f"blobs[0].upload_id {never_put}: no file", "PUT")
    await rejected([{"property": "photo", "upload_id": "upl_unknown"}], "'upl_unknown' is not an upload of bucket")
    foreign = await registry.uploaded(ns, elsewhere, image, "f.png", "image/png")
    await rejected([{"property": "photo", "upload_id": foreign}], f"{foreign!r} is not an upload of bucket {bucket}")

    short = await registry.upload(ns, bucket, filename="s.png", content_type="image/png", size_bytes=len(image))
    await registry.put(short, image[:40])
    await rejected(
        [{"property": "photo", "upload_id": short["upload_id"]}], f"has 40 bytes but size_bytes said {len(image)}"
    )
    too_big = await registry.upload(ns, bucket, filename="b.png", content_type="image/png", size_bytes=MAX)
    await registry.put(too_big, image + b"\x00" * MAX)
    await rejected([{"property": "photo", "upload_id": too_big["upload_id"]}], f"the limit is {MAX} bytes")
    hashed = await registry.upload(
        ns, bucket, filename="h.png", content_type="image/png", size_bytes=len(image), sha256="0" * 64
    )
    await registry.put(hashed, image)
    await rejected([{"property": "photo", "upload_id": hashed["upload_id"]}], "sha256 is")
    fake = await registry.uploaded(ns, bucket, PDF, "fake.png", "image/png")
    await rejected([{"property": "photo", "upload_id": fake}], "are application/pdf (by their first bytes)")
    not_pdf = await registry.uploaded(ns, bucket, b"plain words, no header", "n.pdf", "application/pdf")
    await rejected([{"property": "paper", "upload_id": not_pdf}], "not a PDF")
    await rejected([{"property": "voice", "type": "audio", "upload_id": good}], "which property 'voice' cannot hold")
    await rejected([{"property": "photo", "type": "image", "data": "iVBORw0KGgo="}], "by upload_id", "/uploads")
    await rejected([{"property": "photo", "uri": "s3://featurebus/plugins/x.zip"}], "(got a uri)")
    # One bad blob rejects the whole object, and the good upload in it stays usable.
    await rejected(
        [{"property": "photo", "upload_id": good}, {"property": "voice", "upload_id": fake}],
        "blobs[1].upload_id",
    )
    confirm = await registry.http.post(f"/v1/namespaces/{ns}/buckets/{bucket}/uploads/{fake}/confirm")
    await problem(confirm, f"upload {fake}: the uploaded bytes are application/pdf")
    assert await registry.object_count(ns, bucket) == accepted

    # Nothing was lost: fixing the bytes makes the same request succeed.
    await registry.put(hashed, image)  # still the wrong bytes for the declared sha256...
    await rejected([{"property": "photo", "upload_id": hashed["upload_id"]}], "sha256 is")
    await registry.put(short, image)  # ...but the short upload gets its whole file now
    fixed = await registry.add(
        ns, bucket, [{"property": "photo", "upload_id": short["upload_id"]}, {"property": "photo", "upload_id": good}]
    )
    assert [b["size_bytes"] for b in fixed["blobs"]] == [len(image), len(image)]
    assert await registry.object_count(ns, bucket) == accepted + 1
