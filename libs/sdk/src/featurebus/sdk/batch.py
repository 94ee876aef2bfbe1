"""Batch inference base class (``shared.plugins.inference.batch``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["BaseBatchInferenceService"]


class BaseBatchInferenceService:
    """``__call__(batch)`` delegates to ``_process_batch(batch)``, which subclasses define."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _process_batch(self, batch: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError(f"{type(self).__name__} must define _process_batch(batch)")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        return self._process_batch(batch)
