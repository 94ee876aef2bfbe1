"""The object store (S3 API: SeaweedFS locally, MinIO or S3 in production).

Archives, blobs, frames and vectors live here; events carry ``s3://bucket/key`` URIs and a
SHA-256 of the bytes, and every reader checks that checksum.
"""

from __future__ import annotations

import hashlib
import io
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

from miniopy_async.api import Minio
from miniopy_async.commonconfig import CopySource
from miniopy_async.error import S3Error

from featurebus.common.settings import CommonSettings

__all__ = ["ChecksumMismatch", "ObjectMissing", "ObjectStore", "parse_s3_uri", "sha256_hex"]

_MISSING_CODES = ("NoSuchKey", "NoSuchObject", "NoSuchBucket", "NotFound")


class ChecksumMismatch(Exception):
    pass


class ObjectMissing(FileNotFoundError):
    """The object store has no object at this URI (as opposed to an outage, which is transient)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → (``bucket``, ``a/b``)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.lstrip("/"):
        raise ValueError(f"not an s3:// object URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class ObjectStore:
    """Async access to one bucket of the object store.

    Every request goes to ``s3_endpoint``. Presigned URLs, which users' clients call, are signed
    for ``s3_public_endpoint`` when it is set (:meth:`CommonSettings.public_s3`): SigV4 signs the
    Host header, so a URL signed for the internal name and rewritten afterwards would be refused.
    """

    def __init__(self, settings: CommonSettings) -> None:
        self.bucket = settings.s3_bucket
        self._client = self._minio(settings, settings.s3_endpoint, settings.s3_secure)
        public, secure = settings.public_s3()
        # Signing is local (the region is given, so no request asks the server for it): the
        # signer never opens a connection, it only names the public host in what it signs.
        self._signer = (
            self._client
            if (public, secure) == (settings.s3_endpoint, settings.s3_secure)
            else self._minio(settings, public, secure)
        )

    @staticmethod
    def _minio(settings: CommonSettings, endpoint: str, secure: bool) -> Minio:
        return Minio(
            endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=secure,
            region=settings.s3_region,
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def ensure_bucket(self) -> None:
        if not await self._client.bucket_exists(self.bucket):
            try:
                await self._client.make_bucket(self.bucket)
            except S3Error as exc:  # a concurrent service created it first
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise

    async def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        await self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        return self.uri(key)

    async def put_file(self, key: str, path: Path) -> str:
        """Store a file from disk, streamed (multipart above the client's part size): never whole in memory."""
        await self._client.fput_object(self.bucket, key, str(path))
        return self.uri(key)

    async def get_bytes(self, uri: str, sha256: str | None = None) -> bytes:
        """Read an object by URI; with ``sha256``, raise ChecksumMismatch if the bytes differ."""
        bucket, key = parse_s3_uri(uri)
        try:
            response = await self._client.get_object(bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise ObjectMissing(uri) from exc
            raise
        try:
            data = await response.read()
        finally:
            response.close()
            await response.release()
        if sha256 is not None and sha256_hex(data) != sha256:
            raise ChecksumMismatch(f"{uri}: sha256 {sha256_hex(data)} != expected {sha256}")
        return data

    async def size(self, key: str) -> int | None:
        """The stored size of ``key``, or None when there is no such object."""
        try:
            stat = await self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                return None
            raise
        return stat.size

    async def digest(self, key: str, head_bytes: int = 0) -> tuple[int, str, bytes] | None:
        """Read ``key`` once, in chunks: (size, sha256 hex, its first ``head_bytes`` bytes); None if absent.

        For objects too large to hold in memory (uploaded blobs): nothing but the head is kept.
        """
        try:
            response = await self._client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise
        hasher, size, head = hashlib.sha256(), 0, b""
        try:
            async for chunk in response.content.iter_chunked(1 << 20):
                hasher.update(chunk)
                size += len(chunk)
                if len(head) < head_bytes:
                    head += chunk[: head_bytes - len(head)]
        finally:
            response.close()
            await response.release()
        return size, hasher.hexdigest(), head

    async def copy(self, src_key: str, dst_key: str) -> str:
        """Copy ``src_key`` to ``dst_key`` inside the bucket, server-side; the copy's URI.

        :class:`ObjectMissing` when there is no ``src_key``.
        """
        try:
            await self._client.copy_object(self.bucket, dst_key, CopySource(self.bucket, src_key))
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise ObjectMissing(self.uri(src_key)) from None
            raise
        return self.uri(dst_key)

    async def keys(self, prefix: str) -> list[str]:
        """The keys of every object under ``prefix`` (all levels), sorted."""
        listing = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
        return sorted([item.object_name async for item in listing if item.object_name])

    async def presigned_put(self, key: str, expires: timedelta) -> str:
        """A URL a user's client PUTs ``key``'s bytes to, signed for the public endpoint."""
        return await self._signer.presigned_put_object(self.bucket, key, expires=expires)

    async def delete(self, key: str) -> None:
        await self._client.remove_object(self.bucket, key)

    async def close(self) -> None:
        """Release the HTTP session (call once, at shutdown)."""
        await self._client.close_session()  # type: ignore[no-untyped-call]
        if self._signer is not self._client:
            await self._signer.close_session()  # type: ignore[no-untyped-call]
