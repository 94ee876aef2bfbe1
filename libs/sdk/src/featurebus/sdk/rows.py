"""A plugin step's per-row failure (``from shared.plugins import RowError``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from featurebus.common.events import ReasonCode

__all__ = ["FailedCall", "RowError", "take_failed_calls"]


@dataclass(frozen=True)
class RowError:
    """A step's answer for one row it cannot process, in place of that row's output.

    Put it in any output column of the row (the feature column, or the column a later step reads):
    the host fails that row alone with ``reason`` and ``message``, and later steps do not see it.
    ``None`` in a feature column still means ``null_output``; an exception still fails the batch.
    """

    reason: ReasonCode
    message: str
    hint: str | None = None

    @classmethod
    def unreadable_asset(cls, url: str, error: BaseException | str) -> RowError:
        """The asset at ``url`` could not be downloaded or decoded."""
        cause = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
        return cls(ReasonCode.UNREADABLE_ASSET, f"cannot read the asset {url}: {cause}")


class FailedCall(RowError):
    """What :func:`~featurebus.sdk.assets.concurrent_api_calls` gives in place of a call that failed.

    The guide writes ``[r.data if r else {} for r in results]``: a ``None`` there would become an
    empty result and the row would pass. A FailedCall is truthy, and its attributes, items and calls
    are the FailedCall itself, so it lands in the row's output column and the host fails that row
    ``api_error`` with the call's exception. Code that computes with it (``len``, arithmetic,
    ``json.loads``) raises instead, and the host fails the frame, naming the failed calls.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and pandas probe for protocols: it has none
            raise AttributeError(name)
        return self

    def __getitem__(self, key: Any) -> FailedCall:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> FailedCall:
        return self


_calls = threading.local()


def record_failed_call(failure: FailedCall) -> None:
    """Remember ``failure`` for the step that runs in this thread (see :func:`take_failed_calls`)."""
    if not hasattr(_calls, "failed"):
        _calls.failed = []
    _calls.failed.append(failure)


def take_failed_calls() -> list[FailedCall]:
    """The calls that failed in this thread since the last take (the host takes them around each step)."""
    failed: list[FailedCall] = getattr(_calls, "failed", [])
    _calls.failed = []
    return failed
