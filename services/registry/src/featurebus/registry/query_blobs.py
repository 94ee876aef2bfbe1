"""Image, audio and video queries: the blob a search's ``query`` names, as its plugin will read it.

A query names its blob in one of three ways:

- ``{"upload_id": "upl_..."}``: an upload of one of the namespace's buckets (``POST
  .../buckets/{id}/uploads``, then PUT), verified on first use as an object's blob is;
- ``{"url": "s3://..."}``: a blob of the namespace already in the platform's store (a result's
  blob URL); any other URL is refused, so that no query reads another namespace's bytes;
- ``{"base64": "...", "mime_type": "image/png"}``: the bytes in the request itself (at most
  ``max_query_blob_bytes``), kept in the store under ``queries/`` for the execution and deleted
  after it.

The blob's type is what its first bytes say where they say it (magic numbers), else the declared
``mime_type``; it must be an image, audio, video or PDF. The plugin gets the blob as one row,
``batch["data"]`` its ``s3://`` URL, exactly as it gets an object's blob, so the steps that embed
stored images embed the query image.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Any, TypeGuard

from featurebus.common.media_types import blob_type_of, normalize_mime
from featurebus.common.queries import QueryBlob
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Invalid
from featurebus.registry.magic_numbers import HEAD_BYTES, sniff
from featurebus.registry.records import Namespace
from featurebus.registry.upload_checks import UploadProblem
from featurebus.registry.usecases.blob_uploads import stored_blob, verify_upload

__all__ = ["BLOB_KEYS", "BLOB_QUERY_HINT", "QueryBlobs", "is_blob_query"]

BLOB_KEYS = ("upload_id", "url", "base64")
BLOB_QUERY_HINT = (
    '{"upload_id": "upl_..."} (an upload of the namespace), {"url": "s3://..."} (a blob of the '
    'namespace) or {"base64": "...", "mime_type": "image/png"}'
)


def is_blob_query(query: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a search's query names a blob (rather than a text or a stored document)."""
    return isinstance(query, dict) and any(k in query for k in BLOB_KEYS)


@dataclass
class QueryBlobs:
    """The blobs of one execution's queries; :meth:`forget` deletes the ones the request carried."""

    c: Ctx
    namespace: Namespace
    kept: list[str]  # keys of the request's own bytes, deleted after the execution

    @classmethod
    def of(cls, c: Ctx, namespace: Namespace) -> QueryBlobs:
        return cls(c, namespace, [])

    async def blob(self, where: str, query: dict[str, Any]) -> QueryBlob:
        """The blob ``query`` names; Invalid naming ``where`` and the fix otherwise."""
        given = [k for k in BLOB_KEYS if k in query]
        if len(given) != 1:
            raise Invalid(f"{where}.query names its blob by {given}: give one of them", BLOB_QUERY_HINT)
        [how] = given
        value = query[how]
        if not isinstance(value, str) or not value:
            raise Invalid(f"{where}.query.{how} must be a non-empty string", BLOB_QUERY_HINT)
        declared = query.get("mime_type")
        if declared is not None and not isinstance(declared, str):
            raise Invalid(f"{where}.query.mime_type must be a MIME type such as image/png")
        if how == "upload_id":
            return await self._upload(where, value)
        if how == "url":
            return await self._stored(where, value, declared)
        return await self._inline(where, value, declared)

    async def forget(self) -> None:
        for key in self.kept:
            await self.c.store.delete(key)

    async def _upload(self, where: str, upload_id: str) -> QueryBlob:
        upload = await self.c.tables.blob_uploads.find_one(id=upload_id, namespace_id=self.namespace.id)
        if upload is None:
            raise Invalid(
                f"{where}.query.upload_id {upload_id!r} is not an upload of this namespace",
                "create one with POST /v1/namespaces/{ns}/buckets/{bucket_id}/uploads and PUT the file",
            )
        try:
            found = stored_blob(await verify_upload(self.c, upload))
        except UploadProblem as exc:
            raise Invalid(f"{where}.query.upload_id {upload_id}: {exc}", exc.hint) from None
        return _checked(where, found.uri, found.mime_type, found.size_bytes)

    async def _stored(self, where: str, url: str, declared: str | None) -> QueryBlob:
        own = self.c.store.uri(f"blobs/{self.namespace.org_id}/{self.namespace.id}/")
        key = url.removeprefix(self.c.store.uri(""))
        if not url.startswith(own) or ".." in key.split("/"):
            raise Invalid(
                f"{where}.query.url {url[:200]!r} is not a blob of this namespace",
                "query with a blob URL a result of this namespace gave, an upload_id, or the bytes as base64",
            )
        found = await self.c.store.digest(key, HEAD_BYTES)
        if found is None:
            raise Invalid(f"{where}.query.url {url[:200]!r}: there is no such blob", "it may have been deleted")
        size, _, head = found
        return _checked(where, url, _mime(where, head, declared), size)

    async def _inline(self, where: str, encoded: str, declared: str | None) -> QueryBlob:
        most = self.c.settings.max_query_blob_bytes
        if len(encoded) > (most + 2) // 3 * 4:
            raise Invalid(
                f"{where}.query.base64 holds more than {most} bytes",
                "upload a larger file first and query with its upload_id",
            )
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Invalid(f"{where}.query.base64 is not base64", "send the file's bytes base64-encoded") from None
        if not data:
            raise Invalid(f"{where}.query.base64 is empty")
        mime = _mime(where, data[:HEAD_BYTES], declared)
        key = f"queries/{self.namespace.org_id}/{self.namespace.id}/{uuid.uuid4().hex}"
        uri = await self.c.store.put_bytes(key, data, mime)
        self.kept.append(key)
        return _checked(where, uri, mime, len(data))


def _mime(where: str, head: bytes, declared: str | None) -> str:
    """What the first bytes say the blob is (when they say it exactly), else what was declared."""
    found = sniff(head)
    if found is not None and len(found.blob_types) == 1:
        return found.mime
    if declared:
        return normalize_mime(declared)
    if found is not None:
        return found.mime
    raise Invalid(
        f"{where}.query: the blob's type is not known from its first bytes", 'add "mime_type", e.g. "audio/wav"'
    )


def _checked(where: str, uri: str, mime: str, size: int) -> QueryBlob:
    kind = blob_type_of(mime)
    if kind is None:
        raise Invalid(
            f"{where}.query: a {mime} blob cannot be a query; blob queries are images, audio, video or PDFs",
            'query a text with "query": "..."',
        )
    return QueryBlob(uri=uri, mime_type=mime, blob_type=kind, size_bytes=size)
