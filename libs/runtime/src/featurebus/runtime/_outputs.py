"""Checking what a plugin's steps returned, row by row: vectors, row errors and payload values."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.sdk.rows import RowError

__all__ = ["UNSERIALISABLE", "Problem", "check_vector", "collect_row_errors", "jsonable", "row_failure"]

UNSERIALISABLE = object()
"""What :func:`jsonable` returns for a value that has no JSON form (it is left out of the payload)."""


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (numpy arrays and scalars unwrapped), or :data:`UNSERIALISABLE`."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return UNSERIALISABLE
    return value


def collect_row_errors(out: pd.DataFrame, errors: dict[int, RowError]) -> None:
    """Record the first :class:`RowError` of each row of ``out`` (indexed by the frame's rows)."""
    for column in out.columns:
        if out[column].dtype != object:
            continue
        for i, value in out[column].items():
            if isinstance(value, RowError):
                errors.setdefault(int(i), value)


Problem = tuple[ReasonCode, str, str | None]  # reason, message, hint
# Below this norm a vector cannot be normalised for cosine similarity (float32 underflows).
COSINE_MIN_NORM = 1e-12
_ZERO_HINT = (
    "a zero vector is a placeholder, not an embedding: when a row cannot be embedded, raise or return "
    "featurebus.sdk.rows.RowError for it, so that it is reported"
)


def check_vector(value: Any, name: str, metric: str = "cosine") -> tuple[list[float] | None, Problem | None]:
    """``(vector, None)`` for a finite, non-empty, non-zero list of numbers, else ``(None, problem)``.

    A vector of zeros fails under every metric (nothing in a model's output space is exactly zero:
    it is what an ``except`` branch returns); under ``cosine`` so does one too short to normalise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, (ReasonCode.NULL_OUTPUT, f"the plugin returned None for {name!r}", None)
    try:
        array = np.asarray(value, dtype=np.float32).ravel()
    except (TypeError, ValueError):
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} is not a list of numbers: {str(value)[:80]}", None)
    if array.size == 0:
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} is an empty vector", None)
    if not np.isfinite(array).all():
        return None, (ReasonCode.INVALID_VECTOR, f"{name!r} contains NaN or infinity", None)
    norm = float(np.linalg.norm(array.astype(np.float64)))
    if norm == 0.0:
        return None, (ReasonCode.ZERO_VECTOR, f"{name!r} is all zeros", _ZERO_HINT)
    if metric == "cosine" and norm < COSINE_MIN_NORM:
        message = f"{name!r} has a norm of {norm:.1e}: too small for cosine similarity (it cannot be normalised)"
        return None, (ReasonCode.ZERO_VECTOR, message, _ZERO_HINT)
    return array.tolist(), None


def row_failure(frame: pd.DataFrame, i: int, reason: ReasonCode, message: str, hint: str | None = None) -> RowFailure:
    """The failure of row ``i`` of ``frame``."""
    return RowFailure(
        document_id=str(frame.at[i, "document_id"]),
        object_id=str(frame.at[i, "object_id"]),
        reason=reason,
        message=message,
        hint=hint,
    )
