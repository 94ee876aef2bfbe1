"""A collection's vector schema and the checks of produced vectors against it (pure: no I/O).

The indexer owns the Qdrant schema (DESIGN.md §1): each collection's named vectors come from
the manifest ``features`` of its feature extractors. A produced vector whose name the collection
does not have, or whose length differs from the collection's, fails its row loudly with
``unknown_vector_name`` / ``dimension_mismatch`` — checked against the *real* collection config
read back from Qdrant, never against what the producer claims.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from featurebus.common.events import ReasonCode, RowFailure, VectorIndex

__all__ = [
    "SchemaError",
    "VectorProblem",
    "VectorSpec",
    "check_vectors",
    "row_failure",
    "schema_differences",
    "schema_from_indexes",
]


class SchemaError(ValueError):
    """A collection's requested vectors contradict each other or the existing collection."""


@dataclass(frozen=True)
class VectorSpec:
    """One named dense vector of a collection. ``distance`` is lower case: cosine, euclid, dot."""

    name: str
    size: int
    distance: str


@dataclass(frozen=True)
class VectorProblem:
    reason: ReasonCode
    vector_name: str
    message: str


def schema_from_indexes(collection_id: str, indexes: Sequence[VectorIndex]) -> dict[str, VectorSpec]:
    """The named vectors a collection should have. Two extractors may share a vector name only
    when they agree on its dimension and distance (their points stay apart: one per extractor)."""
    if not indexes:
        raise SchemaError(
            f"collection {collection_id} has no vector_indexes: its feature extractors declare no "
            "`features` (feature_name, embedding_dim, distance_metric) in manifest.py"
        )
    schema: dict[str, VectorSpec] = {}
    for index in indexes:
        spec = VectorSpec(index.name, index.dimensions, index.distance)
        known = schema.get(index.name)
        if known is not None and known != spec:
            raise SchemaError(
                f"collection {collection_id}: vector {index.name!r} is declared twice with different settings "
                f"({known.size}-d {known.distance} vs {spec.size}-d {spec.distance}, from plugin {index.plugin_id}); "
                "give each extractor's feature a distinct feature_name"
            )
        schema[index.name] = spec
    return schema


def schema_differences(existing: Mapping[str, VectorSpec], wanted: Mapping[str, VectorSpec]) -> list[str]:
    """Human-readable differences between an existing collection and the one requested (empty: same)."""
    differences = []
    for name in sorted(set(existing) | set(wanted)):
        have, want = existing.get(name), wanted.get(name)
        if want is None:
            differences.append(f"vector {name!r} is not wanted")
        elif have is None:
            differences.append(f"vector {name!r} is missing (wanted {want.size}-d {want.distance})")
        elif have != want:
            differences.append(
                f"vector {name!r} is {have.size}-d {have.distance}, wanted {want.size}-d {want.distance}"
            )
    return differences


def _as_floats(value: object) -> list[float] | str:
    """The vector as floats, or why it is not a usable vector."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return f"is not a list of numbers ({type(value).__name__})"
    if array.ndim != 1:
        return f"is not a flat list of numbers (shape {array.shape})"
    floats: list[float] = array.tolist()
    if not all(math.isfinite(x) for x in floats):
        return "contains NaN or infinity"
    return floats


def check_vectors(
    collection_id: str,
    document_id: str,
    vectors: Mapping[str, object],
    schema: Mapping[str, VectorSpec],
) -> tuple[dict[str, list[float]], list[VectorProblem]]:
    """Check one row's vectors against the collection; return the clean vectors and the problems."""
    clean: dict[str, list[float]] = {}
    problems: list[VectorProblem] = []
    where = f"collection {collection_id} document {document_id}"
    # A null cell means "this row has no such vector" (inference already failed rows that lack a
    # vector their manifest promises); a row with no vector at all cannot become a point.
    present = {name: value for name, value in vectors.items() if value is not None}
    if not present:
        problems.append(VectorProblem(ReasonCode.INVALID_VECTOR, "", f"{where}: the row has no vectors"))
    for name, value in present.items():
        spec = schema.get(name)
        if spec is None:
            problems.append(
                VectorProblem(
                    ReasonCode.UNKNOWN_VECTOR_NAME,
                    name,
                    f"{where}: vector {name!r} is not a vector of collection {collection_id} (it has {sorted(schema)})",
                )
            )
            continue
        floats = _as_floats(value)
        if isinstance(floats, str):
            problems.append(VectorProblem(ReasonCode.INVALID_VECTOR, name, f"{where}: vector {name!r} {floats}"))
        elif len(floats) != spec.size:
            problems.append(
                VectorProblem(
                    ReasonCode.DIMENSION_MISMATCH,
                    name,
                    f"{where}: vector {name!r} has dimension {len(floats)}, expected {spec.size}",
                )
            )
        else:
            clean[name] = floats
    return clean, problems


_HINTS = {
    ReasonCode.UNKNOWN_VECTOR_NAME: (
        "the collection's vectors come from its extractors' manifest `features`: make the plugin's output "
        "column match a declared feature_name, or recreate the collection after changing the manifest"
    ),
    ReasonCode.DIMENSION_MISMATCH: (
        "manifest `features[].embedding_dim` must equal the length of the vectors the plugin returns"
    ),
    ReasonCode.INVALID_VECTOR: "return one flat list of finite floats per row for every feature",
}


def row_failure(document_id: str, object_id: str, problems: Sequence[VectorProblem]) -> RowFailure:
    """One failure per row (so counts reconcile), with the first problem's reason and every message."""
    first = problems[0]
    return RowFailure(
        document_id=document_id,
        object_id=object_id,
        reason=first.reason,
        message="; ".join(p.message for p in problems),
        hint=_HINTS.get(first.reason),
    )
