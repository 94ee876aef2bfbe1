"""What an uploaded file is, from its first bytes (magic numbers), whatever its declared type says.

Only well-known signatures are recognised; :func:`sniff` returns None for anything else, and the
caller then trusts the declared ``content_type``. Containers that hold either sound or pictures
(MP4, Matroska/WebM, Ogg, ASF) are recognised as *audio or video*.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HEAD_BYTES", "Sniffed", "sniff"]

# How much of a file sniff() looks at: PDF allows its header anywhere in the first 1024 bytes.
HEAD_BYTES = 1024

_AV = frozenset({"audio", "video"})


@dataclass(frozen=True)
class Sniffed:
    mime: str
    # The blob types the bytes may be: {"image"}, {"audio", "video"}, {"other"} for zip, html...
    blob_types: frozenset[str]


def _one(mime: str) -> Sniffed:
    kind = "pdf" if mime == "application/pdf" else mime.split("/", 1)[0]
    return Sniffed(mime, frozenset({kind if kind in ("image", "audio", "video", "pdf") else "other"}))


_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\xff\x0a", "image/jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "image/jxl"),
    (b"ID3", "audio/mpeg"),
    (b"fLaC", "audio/flac"),
    (b"#!AMR", "audio/amr"),
    (b"FLV\x01", "video/x-flv"),
    (b"\x00\x00\x01\xba", "video/mpeg"),
    (b"\x00\x00\x01\xb3", "video/mpeg"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x7fELF", "application/x-executable"),
)

# ISO base media (``....ftyp<brand>``): the brand says what the box holds.
_FTYP_BRANDS: dict[bytes, Sniffed] = {
    **{b: _one("image/heic") for b in (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1")},
    **{b: _one("image/avif") for b in (b"avif", b"avis")},
    **{b: _one("audio/mp4") for b in (b"M4A ", b"M4B ", b"M4P ", b"F4A ")},
    b"qt  ": _one("video/quicktime"),
}


def sniff(head: bytes) -> Sniffed | None:
    """The type of a file from its first bytes (up to :data:`HEAD_BYTES`), or None if unknown."""
    if head[4:8] == b"ftyp":  # first: the box size before it may look like another signature
        return _FTYP_BRANDS.get(head[8:12], Sniffed("video/mp4", _AV))
    for prefix, mime in _PREFIXES:
        if head.startswith(prefix):
            return _one(mime)
    if head[:4] == b"RIFF" and len(head) >= 12:
        form = head[8:12]
        if form == b"WEBP":
            return _one("image/webp")
        if form == b"WAVE":
            return _one("audio/wav")
        if form == b"AVI ":
            return _one("video/x-msvideo")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return _one("audio/aiff")
    if head.startswith(b"\x1aE\xdf\xa3"):
        return Sniffed("video/webm", _AV)
    if head.startswith(b"OggS"):
        return Sniffed("audio/ogg", _AV)
    if head.startswith(b"0&\xb2u\x8ef\xcf\x11"):
        return Sniffed("video/x-ms-asf", _AV)
    if head.startswith(b"BM") and len(head) >= 18 and int.from_bytes(head[14:18], "little") in (12, 40, 56, 108, 124):
        return _one("image/bmp")
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame sync
        return _one("audio/aac" if head[1] & 0x06 == 0 else "audio/mpeg")
    if b"%PDF-" in head[:HEAD_BYTES]:
        return _one("application/pdf")
    text = head[:256].lstrip().lower()
    if text.startswith((b"<?xml", b"<svg")) and b"<svg" in head.lower():
        return _one("image/svg+xml")
    if text.startswith((b"<!doctype html", b"<html")):
        return _one("text/html")
    return None
