"""Identifiers. Anything that a replayed message could create twice gets a deterministic id."""

from __future__ import annotations

import re
import time
import uuid

__all__ = [
    "deterministic_id",
    "document_id",
    "new_id",
    "normalize_version",
    "ordered_id",
    "plugin_id",
    "point_id",
]

_NAMESPACE = uuid.UUID("6f0d5f0c-3a51-5c7e-9d1b-6e2f3c1a9b47")
_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def new_id(prefix: str) -> str:
    """A fresh random id such as ``ns_3f9a...`` for things created by a REST call."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def ordered_id(prefix: str) -> str:
    """A fresh id that sorts by when it was made (microseconds, then random), e.g. ``rex_...``."""
    return f"{prefix}_{time.time_ns() // 1000:014x}{uuid.uuid4().hex[:6]}"


def deterministic_id(prefix: str, *parts: str) -> str:
    """The same parts always give the same id (uuid5), so replays create nothing new."""
    return f"{prefix}_{uuid.uuid5(_NAMESPACE, '/'.join(parts)).hex[:20]}"


def document_id(collection_id: str, object_id: str, blob_id: str) -> str:
    """One output document per (collection, object, blob)."""
    return deterministic_id("doc", collection_id, object_id, blob_id)


def point_id(collection_id: str, document_id: str, plugin_id: str) -> str:
    """The Qdrant point id of one extractor's vectors for a document: a UUID, as Qdrant requires.

    One point per (document, extractor) so that two extractors of one collection never
    overwrite each other's named vectors.
    """
    return str(uuid.uuid5(_NAMESPACE, f"{collection_id}/{document_id}/{plugin_id}"))


def normalize_version(version: str) -> str:
    """``v1`` → ``1.0.0``, ``1.0`` → ``1.0.0``, ``v2.1`` → ``2.1.0`` (the guide's rule).

    Raises ValueError naming the accepted forms for anything else.
    """
    match = _VERSION.match(version.strip())
    if not match:
        raise ValueError(
            f"version {version!r} is not semantic versioning: use X.Y.Z (v1, 1.0 and v2.1 are accepted and normalised)"
        )
    major, minor, patch = (int(g) if g else 0 for g in match.groups())
    return f"{major}.{minor}.{patch}"


def plugin_id(name: str, version: str) -> str:
    """``text_embed`` + ``1.0.0`` → ``text_embed_1_0_0``."""
    return f"{name}_{normalize_version(version).replace('.', '_')}"
