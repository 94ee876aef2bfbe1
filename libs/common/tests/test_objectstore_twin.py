"""The in-memory object store twin and the real S3 server (SeaweedFS) agree (STYLE.md #7)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, ObjectStore, sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.settings import CommonSettings


@pytest.fixture(params=["memory", pytest.param("s3", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryObjectStore()
        return
    env = request.getfixturevalue("local_stack").env()
    real = ObjectStore(CommonSettings(
        s3_endpoint=env["FEATUREBUS_S3_ENDPOINT"], s3_access_key=env["FEATUREBUS_S3_ACCESS_KEY"],
        s3_secret_key=env["FEATUREBUS_S3_SECRET_KEY"], s3_bucket=env["FEATUREBUS_S3_BUCKET"],
    ))  # fmt: skip
    await real.ensure_bucket()
    yield real
    await real.close()


async def test_put_get_size_and_checksums(store: Any) -> None:
    key = f"twin/{uuid.uuid4().hex}.bin"
    uri = await store.put_bytes(key, b"frame bytes")
    assert uri == f"s3://{store.bucket}/{key}"
    assert await store.get_bytes(uri) == b"frame bytes"
    assert await store.get_bytes(uri, sha256_hex(b"frame bytes")) == b"frame bytes"
    with pytest.raises(ChecksumMismatch):
        await store.get_bytes(uri, sha256_hex(b"something else"))
    assert await store.size(key) == len(b"frame bytes")
    assert await store.size(f"twin/{uuid.uuid4().hex}") is None
    await store.delete(key)
    assert await store.size(key) is None


async def test_keys_lists_every_level_under_a_prefix_and_nothing_beside_it(store: Any) -> None:
    root = f"twin/{uuid.uuid4().hex}"
    for key in (f"{root}/a.json", f"{root}/deeper/b.json", f"{root}-beside/c.json"):
        await store.put_bytes(key, b"{}")
    assert await store.keys(f"{root}/") == [f"{root}/a.json", f"{root}/deeper/b.json"]
    await store.delete(f"{root}/a.json")
    assert await store.keys(f"{root}/") == [f"{root}/deeper/b.json"]
    assert await store.keys(f"twin/{uuid.uuid4().hex}/") == []


async def test_rejects_uris_that_are_not_s3(store: Any) -> None:
    with pytest.raises(ValueError, match="not an s3:// object URI"):
        await store.get_bytes("http://example.com/x")


async def test_a_missing_object_is_object_missing_not_an_outage(store: Any) -> None:
    with pytest.raises(ObjectMissing):
        await store.get_bytes(f"s3://{store.bucket}/twin/{uuid.uuid4().hex}")


async def put_presigned(store: Any, url: str, data: bytes) -> None:
    """A client's PUT to a presigned URL (the twin's URLs are written through its stand-in)."""
    if isinstance(store, MemoryObjectStore):
        store.put_presigned(url, data)
        return
    async with httpx.AsyncClient() as client:
        (await client.put(url, content=data)).raise_for_status()


async def test_a_put_to_a_presigned_url_stores_the_bytes_at_its_key(store: Any) -> None:
    key = f"twin/{uuid.uuid4().hex}.zip"
    await put_presigned(store, await store.presigned_put(key, timedelta(minutes=5)), b"archive bytes")
    assert await store.get_bytes(store.uri(key)) == b"archive bytes"


async def test_digest_reads_size_sha256_and_head_and_copy_duplicates(store: Any) -> None:
    key, data = f"twin/{uuid.uuid4().hex}.bin", b"\x89PNG" + b"x" * 3000
    await store.put_bytes(key, data)
    assert await store.digest(key, head_bytes=4) == (len(data), sha256_hex(data), b"\x89PNG")
    assert await store.digest(f"twin/{uuid.uuid4().hex}") is None
    copied = await store.copy(key, key + ".copy")
    assert copied == store.uri(key + ".copy") and await store.get_bytes(copied) == data
    with pytest.raises(ObjectMissing):
        await store.copy(f"twin/{uuid.uuid4().hex}", f"twin/{uuid.uuid4().hex}")
