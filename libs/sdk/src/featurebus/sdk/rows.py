"""A plugin step's per-row failure (``from shared.plugins import RowError``)."""

from __future__ import annotations

from dataclasses import dataclass

from featurebus.common.events import ReasonCode

__all__ = ["RowError"]


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
