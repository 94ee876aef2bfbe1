"""Binary blob uploads on the twins: presigned URL → PUT → verified, immutable bytes.

Verifying checks the bytes that were PUT (size, sha256, what their first bytes are) on a copy that a
later PUT cannot change; a refusal names the field and the fix, and leaves the upload pending so
that the right bytes can still be PUT. The S3 calls involved (presigned PUT, copy, digest) are
proven alike on the twin and on S3 by ``libs/common/tests/test_objectstore_twin.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from registry_blob_samples import PDF, png
from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.registry.errors import Invalid, NotFound
from featurebus.registry.records import BlobUpload, now
from featurebus.registry.routes.blob_uploads import BlobUploadView, CreateBlobUpload
from featurebus.registry.usecases import blob_uploads, buckets

MAX = 4096
SCHEMA: dict[str, Any] = {
    "properties": {
        "photo": {"type": "image"},
        "voice": {"type": "audio"},
        "paper": {"type": "pdf"},
        "caption": {"type": "text"},
    }
}
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40


async def media(**settings: Any) -> tuple[Twins, str]:
    """Twins with namespace docs and a bucket of SCHEMA; the bucket's id."""
    t = twins(max_blob_bytes=MAX, **settings)
    await t.namespace("docs")
    return t, (await buckets.create_bucket(t.c, ADMIN, "docs", "media", SCHEMA)).id


async def upload(
    t: Twins, bucket: str, data: bytes | None, filename: str = "a.png", content_type: str = "image/png", **kw: Any
) -> BlobUpload:
    """An upload declared as ``len(data)`` bytes (unless size_bytes is given), with ``data`` PUT unless None."""
    kw.setdefault("size_bytes", len(data or b""))
    made, url = await blob_uploads.create_blob_upload(t.c, ADMIN, "docs", bucket, filename, content_type, **kw)
    if data is not None:
        t.store.put_presigned(url, data)
    return made


async def confirm(t: Twins, bucket: str, upload_id: str) -> BlobUpload:
    return await blob_uploads.confirm_blob_upload(t.c, ADMIN, "docs", bucket, upload_id)


async def test_put_then_confirm_verifies_the_bytes_into_an_immutable_copy() -> None:
    t, bucket = await media()
    image = png(rgb=(200, 20, 20))
    digest = hashlib.sha256(image).hexdigest()
    made, url = await blob_uploads.create_blob_upload(
        t.c, ADMIN, "docs", bucket, "red square.png", "image/png", len(image), digest.upper()
    )
    assert made.id.startswith("upl_") and (made.status, made.sha256, made.key) == (
        "pending",
        digest,
        f"uploads/blobs/{made.id}",
    )
    assert made.expires_at - now() > timedelta(minutes=59) and url.startswith("memory://")
    assert (await blob_uploads.get_blob_upload(t.c, ADMIN, "docs", bucket, made.id))[1] == 0
    t.store.put_presigned(url, image)
    assert (await blob_uploads.get_blob_upload(t.c, ADMIN, "docs", bucket, made.id))[1] == len(image)

    verified = await confirm(t, bucket, made.id)
    final = f"blobs/org_1/ns_docs/{bucket}/{made.id}/red_square.png"
    assert (verified.status, verified.uri, verified.mime_type, verified.verified_sha256) == (
        "verified",
        t.store.uri(final),
        "image/png",
        digest,
    )
    assert verified.verified_at is not None
    assert await t.store.get_bytes(t.store.uri(final), digest) == image
    assert await t.store.size(made.key) is None  # the staging copy is gone
    stored, received = await blob_uploads.get_blob_upload(t.c, ADMIN, "docs", bucket, made.id)
    assert (stored.status, stored.uri, received) == ("verified", verified.uri, None)

    # A PUT to the still-valid URL afterwards changes nothing that was accepted.
    t.store.put_presigned(url, png(rgb=(0, 0, 255)))
    again = await confirm(t, bucket, made.id)
    assert (again.uri, again.verified_sha256) == (verified.uri, digest)
    assert await t.store.get_bytes(t.store.uri(final), digest) == image


async def test_the_mime_type_is_what_the_bytes_are() -> None:
    t, bucket = await media()
    voice = await confirm(t, bucket, (await upload(t, bucket, WAV, "hello.wav", "audio/x-wav")).id)
    assert (voice.content_type, voice.mime_type) == ("audio/x-wav", "audio/wav")
    jpg = await upload(t, bucket, png(), "a.jpg", "image/jpg")
    assert (await confirm(t, bucket, jpg.id)).mime_type == "image/png"
    paper = await confirm(t, bucket, (await upload(t, bucket, PDF, "paper.pdf", "application/pdf")).id)
    assert (paper.mime_type, paper.size_bytes) == ("application/pdf", len(PDF))


def test_the_views_show_received_bytes_only_while_pending_and_the_request_takes_aliases() -> None:
    body = CreateBlobUpload.model_validate({"filename": "a.png", "mime_type": "image/png", "file_size_bytes": 3})
    assert (body.content_type, body.size_bytes, body.sha256) == ("image/png", 3, None)
    for missing in ("filename", "content_type", "size_bytes"):
        ask = {"filename": "a.png", "content_type": "image/png", "size_bytes": 3}
        with pytest.raises(ValidationError, match=missing):
            CreateBlobUpload.model_validate({k: v for k, v in ask.items() if k != missing})
    pending = BlobUpload(
        id="upl_1",
        org_id="org_1",
        namespace_id="ns_docs",
        bucket_id="bkt_1",
        filename="a.png",
        content_type="image/png",
        size_bytes=3,
        key="uploads/blobs/upl_1",
        expires_at=now(),
    )
    shown = BlobUploadView.of(pending, 2).model_dump()
    assert shown["received_bytes"] == 2 and shown["upload_id"] == "upl_1" and "key" not in shown
    verified = pending.model_copy(update={"status": "verified", "uri": "s3://fb/x", "mime_type": "image/png"})
    assert "received_bytes" not in BlobUploadView.of(verified).model_dump()


@pytest.mark.parametrize(
    ("request_", "detail", "hint"),
    [
        ({"content_type": "text/plain"}, "content_type 'text/plain' is not an uploadable blob type", "inline"),
        ({"content_type": "application/zip"}, "accepted: image/*, audio/*, video/*, application/pdf", None),
        ({"content_type": "video/mp4"}, "this bucket has no video property", '"type": "video"'),
        ({"size_bytes": 0}, "size_bytes must be the file's size in bytes", None),
        ({"size_bytes": MAX + 1}, f"size_bytes {MAX + 1} exceeds the limit of {MAX}", "FEATUREBUS_MAX_BLOB_BYTES"),
        ({"sha256": "abc"}, "sha256 must be 64 hex digits", "sha256sum"),
    ],
)
async def test_a_bad_upload_request_is_refused_naming_the_field(
    request_: dict[str, Any], detail: str, hint: str | None
) -> None:
    t, bucket = await media()
    ask = {"filename": "a.png", "content_type": "image/png", "size_bytes": 10, **request_}
    with pytest.raises(Invalid) as refused:
        await blob_uploads.create_blob_upload(t.c, ADMIN, "docs", bucket, **ask)
    assert detail in refused.value.detail and refused.value.hint
    if hint is not None:
        assert hint in refused.value.hint
    assert await t.tables.blob_uploads.find() == []


@pytest.mark.parametrize(
    ("data", "declared", "detail"),
    [
        (png()[:40], {"size_bytes": len(png())}, f"has 40 bytes but size_bytes said {len(png())}"),
        (png() + b"\x00" * MAX, {"size_bytes": MAX}, f"the limit is {MAX} bytes per blob"),
        (b"", {"size_bytes": 10}, "the uploaded file is empty"),
        (png(), {"sha256": "0" * 64}, f"sha256 is {hashlib.sha256(png()).hexdigest()}, not the {'0' * 64}"),
        (PDF, {}, "the uploaded bytes are application/pdf (by their first bytes), not image/png"),
    ],
)
async def test_bytes_that_do_not_match_the_request_are_refused_and_the_upload_stays_pending(
    data: bytes, declared: dict[str, Any], detail: str
) -> None:
    t, bucket = await media()
    made = await upload(t, bucket, data, **declared)
    with pytest.raises(Invalid) as refused:
        await confirm(t, bucket, made.id)
    assert refused.value.detail.startswith(f"upload {made.id}: ") and detail in refused.value.detail
    assert refused.value.hint
    stored = await t.tables.blob_uploads.get(made.id)
    assert stored is not None and (stored.status, stored.uri, stored.verified_sha256) == ("pending", None, None)
    assert [k for k in t.store.objects if k.startswith(t.store.uri("blobs/"))] == []  # no verified copy is kept


async def test_a_wrong_declared_sha256_is_refused_until_the_right_bytes_are_put() -> None:
    t, bucket = await media()
    image = png()
    made, url = await blob_uploads.create_blob_upload(
        t.c, ADMIN, "docs", bucket, "a.png", "image/png", len(image), hashlib.sha256(image).hexdigest()
    )
    t.store.put_presigned(url, png(rgb=(1, 2, 3)))  # the same size, other bytes
    with pytest.raises(Invalid, match=r"sha256 is [0-9a-f]{64}, not the [0-9a-f]{64} that was declared") as refused:
        await confirm(t, bucket, made.id)
    assert refused.value.hint == "PUT the whole file to presigned_url again (before expires_at), or create a new upload"
    t.store.put_presigned(url, image)
    assert (await confirm(t, bucket, made.id)).verified_sha256 == hashlib.sha256(image).hexdigest()


async def test_not_a_pdf_and_nothing_put_are_refused_with_the_fix() -> None:
    t, bucket = await media()
    not_pdf = await upload(t, bucket, b"plain words, no header", "n.pdf", "application/pdf")
    with pytest.raises(Invalid, match="not a PDF: it has no %PDF- header"):
        await confirm(t, bucket, not_pdf.id)
    never_put = await upload(t, bucket, None, size_bytes=10)
    with pytest.raises(Invalid, match=f"upload {never_put.id}: no file was uploaded yet") as missing:
        await confirm(t, bucket, never_put.id)
    assert missing.value.hint == "PUT the file's bytes to presigned_url first, then add the object"


async def test_an_expired_upload_with_nothing_put_says_so_but_bytes_put_in_time_still_verify() -> None:
    t, bucket = await media(presigned_url_ttl_s=60)
    late = await upload(t, bucket, None, size_bytes=10)
    in_time = await upload(t, bucket, png())
    past = now() - timedelta(seconds=1)
    for made in (late, in_time):
        assert await t.tables.blob_uploads.update(made.id, {"expires_at": past})
    with pytest.raises(Invalid, match="nothing was uploaded before presigned_url expired at") as expired:
        await confirm(t, bucket, late.id)
    assert expired.value.hint == "create a new upload (POST .../uploads) and PUT the file to its presigned_url"
    assert (await confirm(t, bucket, in_time.id)).status == "verified"


async def test_concurrent_confirms_record_one_verification_and_all_return_it(monkeypatch: pytest.MonkeyPatch) -> None:
    t, bucket = await media()
    made = await upload(t, bucket, png())
    digest = t.store.digest

    async def slow_digest(key: str, head_bytes: int = 0) -> tuple[int, str, bytes] | None:
        await asyncio.sleep(0)  # let the other confirm copy and check too before either records
        return await digest(key, head_bytes)

    update = t.tables.blob_uploads.update
    recorded: list[bool] = []

    async def recording_update(id: str, changes: Any, **where: Any) -> bool:
        recorded.append(await update(id, changes, **where))
        return recorded[-1]

    monkeypatch.setattr(t.store, "digest", slow_digest)
    monkeypatch.setattr(t.tables.blob_uploads, "update", recording_update)
    first, second, third = await asyncio.gather(*(confirm(t, bucket, made.id) for _ in range(3)))
    assert recorded == [True, False, False]  # each checked the bytes; the compare-and-set let one record
    stored = await t.tables.blob_uploads.get(made.id)
    assert stored is not None and stored.status == "verified"
    for seen in (first, second, third):
        assert (seen.status, seen.uri, seen.verified_sha256) == ("verified", stored.uri, stored.verified_sha256)
    assert await t.store.size(made.key) is None
    assert stored.uri is not None and await t.store.get_bytes(stored.uri, stored.verified_sha256) == png()

    # A verification that started from the pending record after another finished returns its facts.
    assert (await blob_uploads.verify_upload(t.c, made)).verified_at == stored.verified_at


async def test_a_key_limited_to_another_namespace_gets_not_found_on_every_upload_route() -> None:
    t, bucket = await media()
    other = await t.namespace("other")
    made = await upload(t, bucket, png())
    stranger = limited_to(other.id)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await blob_uploads.create_blob_upload(t.c, stranger, "docs", bucket, "a.png", "image/png", 10)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await blob_uploads.get_blob_upload(t.c, stranger, "docs", bucket, made.id)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await blob_uploads.confirm_blob_upload(t.c, stranger, "docs", bucket, made.id)
    with pytest.raises(NotFound, match=f"bucket {bucket!r} not found in namespace 'other'"):
        await blob_uploads.confirm_blob_upload(t.c, stranger, "other", bucket, made.id)
    assert (await t.tables.blob_uploads.get(made.id)) is not None and await t.store.size(made.key) == len(png())


async def test_an_upload_is_found_only_in_its_own_bucket() -> None:
    t, bucket = await media()
    elsewhere = (await buckets.create_bucket(t.c, ADMIN, "docs", "elsewhere", SCHEMA)).id
    made = await upload(t, bucket, png())
    with pytest.raises(NotFound, match=f"upload {made.id!r} not found in bucket {elsewhere!r}") as missing:
        await blob_uploads.get_blob_upload(t.c, ADMIN, "docs", elsewhere, made.id)
    assert missing.value.hint == "start with POST .../uploads"
    with pytest.raises(NotFound, match="not found in bucket"):
        await confirm(t, elsewhere, made.id)
    with pytest.raises(NotFound, match="upl_nope"):
        await confirm(t, bucket, "upl_nope")
