"""API-key rules without I/O: who may do what, expiry, revocation, the last-used throttle."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "LAST_USED_EVERY",
    "MAX_LIFETIME",
    "KeyRefused",
    "Principal",
    "as_utc",
    "due_for_touch",
    "expiry",
    "key_prefix",
    "refusal",
    "state",
]

# last_used_at is written at most this often per key (per registry process), not on every request.
LAST_USED_EVERY = timedelta(seconds=60)
MAX_LIFETIME = timedelta(days=3650)


@dataclass
class Principal:
    """The caller: its organization, its key, whether it is an admin key, the namespaces it may use."""

    org_id: str
    key_id: str
    admin: bool
    namespaces: list[str] | None  # None = every namespace of the organization

    @property
    def limited(self) -> bool:
        return self.namespaces is not None

    def may_use(self, namespace_id: str) -> bool:
        """By id only: a key records the ids of its namespaces, and another namespace may be *named*
        like one of those ids (it must not come within the key's reach by its name)."""
        return self.namespaces is None or namespace_id in self.namespaces


class KeyRefused(ValueError):
    """A key that exists but may not be used (revoked or expired); the message says which and when."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def as_utc(when: datetime) -> datetime:
    """MongoDB hands datetimes back without a zone; they are UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def state(revoked_at: datetime | None, expires_at: datetime | None, at: datetime) -> str:
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and as_utc(expires_at) <= at:
        return "expired"
    return "active"


def refusal(key_id: str, revoked_at: datetime | None, expires_at: datetime | None, at: datetime) -> KeyRefused | None:
    """Why the key may not be used at ``at``, or None."""
    hint = "ask an admin for a new key: POST /v1/organizations/api-keys"
    if revoked_at is not None:
        return KeyRefused(f"API key {key_id} was revoked at {as_utc(revoked_at).isoformat()}", hint)
    if expires_at is not None and as_utc(expires_at) <= at:
        return KeyRefused(f"API key {key_id} expired at {as_utc(expires_at).isoformat()}", hint)
    return None


def due_for_touch(last_used_at: datetime | None, at: datetime) -> bool:
    return last_used_at is None or at - as_utc(last_used_at) >= LAST_USED_EVERY


def expiry(expires_at: datetime | None, expires_in_seconds: int | None, at: datetime) -> datetime | None:
    """The expiry asked for at creation; ValueError naming the field when it cannot be."""
    if expires_at is not None and expires_in_seconds is not None:
        raise ValueError("give expires_at or expires_in_seconds, not both")
    if expires_in_seconds is not None:
        if expires_in_seconds <= 0:
            raise ValueError(f"expires_in_seconds must be positive (got {expires_in_seconds})")
        if expires_in_seconds > MAX_LIFETIME.total_seconds():  # before timedelta(), which overflows
            raise ValueError(f"expires_in_seconds is at most {int(MAX_LIFETIME.total_seconds())} (ten years)")
        return at + timedelta(seconds=expires_in_seconds)
    if expires_at is not None:
        when = as_utc(expires_at)
        if when <= at:
            raise ValueError(f"expires_at {when.isoformat()} is not in the future")
        if when - at > MAX_LIFETIME:
            raise ValueError("expires_at is more than ten years away")
        return when
    return None


def key_prefix(key: str) -> str:
    """What a listing shows of a key: at most 10 characters and at most a quarter of it."""
    return key[: min(10, len(key) // 4)]
