"""How long a consumer has been waiting for something that another topic should bring first.

A trigger may overtake its objects, a frame's vectors the collection's lifecycle event: the
consumer retries (a transient error) while the wait is within its grace period, then fails loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Waits"]


@dataclass
class Waits:
    """Per message (by event id): when this process first found it waiting."""

    _since: dict[str, float] = field(default_factory=dict)

    def waited(self, key: str, now: float) -> float:
        """Seconds since ``key`` was first found waiting (0 the first time)."""
        return now - self._since.setdefault(key, now)

    def done(self, key: str) -> None:
        """``key`` waits no more: it went through, or failed for good."""
        self._since.pop(key, None)
