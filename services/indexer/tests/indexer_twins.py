"""In-memory twins used by the indexer's unit tests."""

from __future__ import annotations

from featurebus.common.objectstore import ChecksumMismatch, parse_s3_uri, sha256_hex


class MemoryObjectStore:
    """The slice of ObjectStore the services use, over a dict of uri → bytes."""

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

    async def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        parse_s3_uri(uri)
        data = self.objects[uri]
        if sha256 is not None and sha256_hex(data) != sha256:
            raise ChecksumMismatch(f"{uri}: sha256 {sha256_hex(data)} != expected {sha256}")
        return data
