"""API keys, managed by org-admin keys: create (the key is shown once), list (never the key), revoke."""

from __future__ import annotations

import secrets as pysecrets
from datetime import datetime

from featurebus.common.ids import new_id
from featurebus.registry.auth import Principal, hash_key, require_admin, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, Invalid, NotFound
from featurebus.registry.key_rules import expiry, key_prefix, state
from featurebus.registry.records import ApiKey, now

__all__ = ["create_key", "list_keys", "revoke_key"]


def _admin(who: Principal) -> None:
    require_admin(who, "managing API keys")


async def create_key(
    c: Ctx,
    who: Principal,
    name: str,
    *,
    namespaces: list[str] | None = None,
    admin: bool = False,
    expires_at: datetime | None = None,
    expires_in_seconds: int | None = None,
) -> tuple[ApiKey, str]:
    """The stored key and the key itself (the only time it exists outside the caller's hands)."""
    _admin(who)
    if admin and namespaces is not None:
        raise Invalid("admin: an admin key cannot be limited to namespaces", "drop namespaces or admin")
    try:
        expires = expiry(expires_at, expires_in_seconds, now())
    except ValueError as exc:
        raise Invalid(str(exc), '{"name": "ci", "expires_in_seconds": 86400}') from None
    namespace_ids = None
    if namespaces is not None:
        namespace_ids = []
        for i, ns in enumerate(namespaces):
            try:
                namespace_ids.append((await resolve_namespace(c.tables, who, ns)).id)
            except NotFound:
                raise Invalid(
                    f"namespaces[{i}]: namespace {ns!r} not found", "create it first with POST /v1/namespaces"
                ) from None
    key = "fb_" + pysecrets.token_urlsafe(32)
    record = ApiKey(
        id=new_id("key"),
        org_id=who.org_id,
        name=name,
        key_hash=hash_key(key),
        admin=admin,
        namespaces=sorted(set(namespace_ids)) if namespace_ids is not None else None,
        prefix=key_prefix(key),
        expires_at=expires,
    )
    await c.tables.api_keys.insert(record)
    return record, key


async def list_keys(c: Ctx, who: Principal, offset: int, limit: int) -> tuple[list[ApiKey], int]:
    _admin(who)
    return await c.tables.api_keys.page(offset, limit, org_id=who.org_id)


async def revoke_key(c: Ctx, who: Principal, key_id: str) -> ApiKey:
    """Revoke at once: every registry process looks the key up on every request."""
    _admin(who)
    record = await c.tables.api_keys.get(key_id)
    if record is None or record.org_id != who.org_id:
        raise NotFound(f"API key {key_id!r} not found", "GET /v1/organizations/api-keys lists the keys")
    if record.revoked_at is not None:
        return record
    if record.admin:
        admins = await c.tables.api_keys.find(org_id=who.org_id, admin=True)
        others = [a for a in admins if a.id != record.id and state(a.revoked_at, a.expires_at, now()) == "active"]
        if not others:
            raise Conflict(
                f"API key {key_id} is the organization's last usable admin key",
                'create another admin key first: POST /v1/organizations/api-keys {"name": ..., "admin": true}',
            )
    record.revoked_at = now()
    await c.tables.api_keys.update(record.id, {"revoked_at": record.revoked_at})
    return record
