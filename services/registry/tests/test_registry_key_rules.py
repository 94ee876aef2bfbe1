"""API-key rules: revocation and expiry refuse a key with the reason, last-used is written sparingly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from featurebus.registry.key_rules import Principal, due_for_touch, expiry, key_prefix, refusal, state

AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_a_revoked_or_expired_key_is_refused_naming_why_and_when() -> None:
    assert refusal("key_a", None, None, AT) is None
    assert refusal("key_a", None, AT + timedelta(seconds=1), AT) is None
    expired = refusal("key_a", None, AT.replace(tzinfo=None), AT)  # MongoDB hands back naive UTC
    assert expired is not None and str(expired) == "API key key_a expired at 2025-06-01T12:00:00+00:00"
    revoked = refusal("key_a", AT - timedelta(hours=1), None, AT)
    assert revoked is not None and "revoked at 2025-06-01T11:00:00" in str(revoked) and "new key" in revoked.hint
    assert [state(None, None, AT), state(AT, None, AT), state(None, AT, AT)] == ["active", "revoked", "expired"]


def test_last_used_is_written_at_most_once_a_minute() -> None:
    assert due_for_touch(None, AT)
    assert not due_for_touch(AT - timedelta(seconds=59), AT)
    assert due_for_touch((AT - timedelta(seconds=60)).replace(tzinfo=None), AT)


def test_expiry_is_asked_for_one_way_and_in_the_future() -> None:
    assert expiry(None, None, AT) is None
    assert expiry(None, 3600, AT) == AT + timedelta(hours=1)
    assert expiry(AT + timedelta(days=1), None, AT) == AT + timedelta(days=1)
    assert expiry((AT + timedelta(days=1)).replace(tzinfo=None), None, AT) == AT + timedelta(days=1)
    for at, seconds, message in [
        (AT + timedelta(days=1), 60, "not both"),
        (None, 0, "expires_in_seconds must be positive"),
        (None, 10**12, "at most"),
        (None, 2**62, "at most"),  # beyond timedelta's range: a 422, not an OverflowError
        (AT - timedelta(seconds=1), None, "not in the future"),
    ]:
        with pytest.raises(ValueError, match=message):
            expiry(at, seconds, AT)


def test_a_listing_shows_only_a_short_prefix_of_a_key() -> None:
    key = "fb_" + "x" * 43
    assert key_prefix(key) == key[:10]
    assert key_prefix("fb_short") == "fb"  # a quarter at most of a short, chosen key


def test_a_limited_key_uses_only_the_namespaces_whose_ids_it_holds() -> None:
    limited = Principal("org", "key_1", admin=False, namespaces=["ns_a"])
    assert limited.limited and limited.may_use("ns_a") and not limited.may_use("ns_b")
    # a namespace *named* "ns_a" (names are free text) is another namespace: ids only
    assert not limited.may_use("ns_twin")
    everywhere = Principal("org", "key_2", admin=False, namespaces=None)
    assert not everywhere.limited and everywhere.may_use("ns_b")
