"""An in-memory twin of :class:`~featurebus.common.objectstore.ObjectStore` for unit tests.

``libs/common/tests/test_objectstore_twin.py`` runs the same assertions on this twin and on the
real S3 server, so unit tests that use it test what production does.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from featurebus.common.objectstore import ChecksumMismatch, ObjectMissing, parse_s3_uri, sha256_hex

__all__ = ["MemoryObjectStore"]


class MemoryObjectStore:
    """ObjectStore's interface over a dict of ``s3://`` URI → bytes."""

    def __init__(self, bucket: str = "featurebus") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def ensure_bucket(self) -> None:
        return None

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.objects[self.uri(key)] = data
        return self.uri(key)

    async def put_file(self, key: str, path: Path) -> str:
        return await self.put_bytes(key, Path(path).read_bytes())

    async def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        parse_s3_uri(uri)
        try:
            data = self.objects[uri]
        except KeyError:
            raise ObjectMissing(uri) from None
        if sha256 is not None and sha256_hex(data) != sha256:
            raise ChecksumMismatch(f"{uri}: sha256 {sha256_hex(data)} != expected {sha256}")
        return data

    async def size(self, key: str) -> int | None:
        data = self.objects.get(self.uri(key))
        return None if data is None else len(data)

    async def digest(self, key: str, head_bytes: int = 0) -> tuple[int, str, bytes] | None:
        data = self.objects.get(self.uri(key))
        return None if data is None else (len(data), hashlib.sha256(data).hexdigest(), data[:head_bytes])

    async def copy(self, src_key: str, dst_key: str) -> str:
        try:
            self.objects[self.uri(dst_key)] = self.objects[self.uri(src_key)]
        except KeyError:
            raise ObjectMissing(self.uri(src_key)) from None
        return self.uri(dst_key)

    async def keys(self, prefix: str) -> list[str]:
        start = self.uri("")
        return sorted(u[len(start) :] for u in self.objects if u.startswith(start + prefix))

    async def presigned_put(self, key: str, expires: timedelta) -> str:
        """A ``memory://`` URL; :meth:`put_presigned` stands in for the client's PUT to it."""
        return f"memory://{self.bucket}/{key}?expires={int(expires.total_seconds())}"

    def put_presigned(self, url: str, data: bytes) -> None:
        """What a client's ``PUT url`` does to the S3 server: store ``data`` at the URL's key."""
        prefix = f"memory://{self.bucket}/"
        if not url.startswith(prefix):
            raise ValueError(f"{url!r} is not a presigned URL of this store")
        self.objects[self.uri(url[len(prefix) :].split("?", 1)[0])] = data

    async def delete(self, key: str) -> None:
        self.objects.pop(self.uri(key), None)

    async def close(self) -> None:
        return None
