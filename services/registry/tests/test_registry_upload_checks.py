"""Binary blob uploads, the pure rules: magic numbers, request and stored-bytes checks, blob references."""

from __future__ import annotations

import hashlib
import struct

import pytest
from registry_blob_samples import PDF, png

from featurebus.registry.bucket_schema import SchemaError, build_blobs, parse_blobs, to_blobs
from featurebus.registry.magic_numbers import sniff
from featurebus.registry.upload_checks import (
    StoredBlob,
    UploadProblem,
    blob_key,
    check_request,
    check_stored,
    safe_filename,
)

SIGNATURES = {
    "image/png": png(),
    "image/jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "image/gif": b"GIF89a\x01\x00\x01\x00",
    "image/webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
    "image/tiff": b"II*\x00\x08\x00\x00\x00",
    "image/bmp": b"BM" + b"\x00" * 12 + struct.pack("<I", 40) + b"\x00" * 8,
    "image/heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
    "audio/wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    "audio/mpeg": b"ID3\x04\x00\x00\x00\x00\x00\x00",
    "audio/flac": b"fLaC\x00\x00\x00\x22",
    "audio/mp4": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00",
    "video/x-msvideo": b"RIFF\x24\x00\x00\x00AVI LIST",
    "application/pdf": PDF,
    "application/zip": b"PK\x03\x04\x14\x00",
}
PROPS = {"photo": {"type": "image"}, "voice": {"type": "audio"}, "caption": {"type": "text"}}
MAX = 1000


@pytest.mark.parametrize(("mime", "head"), SIGNATURES.items())
def test_magic_numbers_name_the_format(mime: str, head: bytes) -> None:
    found = sniff(head)
    assert found is not None and found.mime == mime


def test_containers_of_sound_or_pictures_may_be_either_and_unknown_bytes_are_unknown() -> None:
    mp4 = sniff(b"\x00\x00\x01\x00ftypisom\x00\x00\x02\x00")  # a box size that looks like an .ico
    assert mp4 is not None and mp4.blob_types == {"audio", "video"}
    for head in (b"\x1aE\xdf\xa3\x01\x00", b"OggS\x00\x02"):
        found = sniff(head)
        assert found is not None and found.blob_types == {"audio", "video"}
    assert sniff(b"hello, world") is None and sniff(b"") is None


def test_an_upload_request_must_fit_the_bucket_and_the_limit() -> None:
    assert check_request("Image/PNG; charset=binary", 10, None, PROPS, MAX) == "image/png"
    assert check_request("audio/mpeg", MAX, "a" * 64, PROPS, MAX) == "audio/mpeg"
    with pytest.raises(UploadProblem, match="content_type 'text/plain' is not an uploadable blob type") as info:
        check_request("text/plain", 10, None, PROPS, MAX)
    assert info.value.hint and "inline" in info.value.hint
    with pytest.raises(UploadProblem, match="accepted: image/\\*, audio/\\*, video/\\*, application/pdf"):
        check_request("application/zip", 10, None, PROPS, MAX)
    with pytest.raises(UploadProblem, match="video, but this bucket has no video property") as info:
        check_request("video/mp4", 10, None, PROPS, MAX)
    assert "['photo', 'voice']" in str(info.value) and info.value.hint and '"type": "video"' in info.value.hint
    with pytest.raises(UploadProblem, match="size_bytes must be"):
        check_request("image/png", 0, None, PROPS, MAX)
    with pytest.raises(UploadProblem, match="size_bytes 1001 exceeds the limit of 1000") as info:
        check_request("image/png", MAX + 1, None, PROPS, MAX)
    assert info.value.hint and "FEATUREBUS_MAX_BLOB_BYTES" in info.value.hint
    with pytest.raises(UploadProblem, match="sha256 must be 64 hex digits"):
        check_request("image/png", 10, "not-a-digest", PROPS, MAX)


def stored(content_type: str, data: bytes, *, declared: int | None = None, sha: str | None = None) -> str:
    return check_stored(
        content_type=content_type,
        declared_size=len(data) if declared is None else declared,
        declared_sha256=sha,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        head=data[:1024],
        max_bytes=MAX,
    )


def test_stored_bytes_are_checked_against_the_request() -> None:
    image = png()
    assert stored("image/png", image, sha=hashlib.sha256(image).hexdigest()) == "image/png"
    assert stored("image/jpg", SIGNATURES["image/jpeg"]) == "image/jpeg"  # what the bytes are wins
    assert stored("audio/mp4", b"\x00\x00\x00\x20ftypisom" + b"\x00" * 20) == "audio/mp4"  # either: declared
    assert stored("image/x-unknown", b"\x00\x01\x02 some format we do not know") == "image/x-unknown"
    assert stored("application/pdf", b"junk before the header " + PDF) == "application/pdf"
    problems = {
        "the uploaded file is empty": ("image/png", b"", None, None),
        "has 1001 bytes; the limit is 1000": ("image/png", b"\x00" * 1001, None, None),
        "has 67 bytes but size_bytes said 100": ("image/png", image[:67], 100, None),
        "sha256 is": ("image/png", image, None, "0" * 64),
        "are application/pdf (by their first bytes), not image/png": ("image/png", PDF, None, None),
        "are image/png (by their first bytes), not audio/mpeg": ("audio/mpeg", image, None, None),
        "not a PDF: it has no %PDF- header": ("application/pdf", b"hello", None, None),
    }
    for needle, (mime, data, declared, sha) in problems.items():
        with pytest.raises(UploadProblem) as info:
            stored(mime, data, declared=declared, sha=sha)
        assert needle in str(info.value), (needle, str(info.value))
        assert info.value.hint


def test_keys_keep_a_safe_file_name() -> None:
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\photos\\my cat (1).JPG") == "my_cat_1_.JPG"
    assert safe_filename("...") == "blob"
    assert blob_key("org", "ns", "bkt", "upl_1", "a b.png") == "blobs/org/ns/bkt/upl_1/a_b.png"


def blob_id(object_id: str, prop: str, i: int) -> str:
    return f"{object_id}-{prop}-{i}"


def test_binary_blobs_reference_uploads_and_say_how_when_they_do_not() -> None:
    requests = parse_blobs(
        [{"property": "caption", "type": "text", "data": "a cat"}, {"property": "photo", "upload_id": "upl_1"}],
        PROPS,
        MAX,
    )
    assert [(r.index, r.type, r.upload_id) for r in requests] == [(0, "text", None), (1, "image", "upl_1")]
    upload = StoredBlob("upl_1", "s3://fb/blobs/o/n/b/upl_1/cat.png", "image/png", 68, "f" * 64)
    caption, photo = build_blobs("obj", requests, blob_id, {"upl_1": upload})
    assert caption.data == "a cat" and caption.size_bytes == 0
    assert (photo.blob_id, photo.type, photo.uri, photo.mime_type, photo.size_bytes, photo.sha256) == (
        "obj-photo-1",
        "image",
        upload.uri,
        "image/png",
        68,
        "f" * 64,
    )
    assert photo.data is None
    for blob, got in (
        ({"property": "photo", "type": "image", "data": "iVBORw0KGgo..."}, "inline data"),
        ({"property": "photo", "type": "image", "uri": "s3://featurebus/anything"}, "a uri"),
        ({"property": "photo", "type": "image"}, "no upload_id"),
    ):
        with pytest.raises(SchemaError) as info:
            parse_blobs([blob], PROPS, MAX)
        assert f"blobs[0]: image blobs reference their uploaded bytes by upload_id (got {got})" in str(info.value)
        assert info.value.hint and "/uploads" in info.value.hint and "presigned_url" in info.value.hint


def test_an_upload_only_fits_a_property_of_its_type() -> None:
    requests = parse_blobs([{"property": "voice", "type": "audio", "upload_id": "upl_1"}], PROPS, MAX)
    upload = StoredBlob("upl_1", "s3://fb/k.png", "image/png", 68, "f" * 64)
    with pytest.raises(SchemaError) as info:
        build_blobs("obj", requests, blob_id, {"upl_1": upload})
    message = str(info.value)
    assert "blobs[0]: upload upl_1 is image/png, which property 'voice' cannot hold: it is of type 'audio'" in message
    assert info.value.hint and "'image'" in info.value.hint
    with pytest.raises(SchemaError, match="not a verified upload"):
        to_blobs("obj", [{"property": "voice", "upload_id": "upl_2"}], PROPS, MAX, blob_id)
