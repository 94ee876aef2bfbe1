"""Who is calling and what they may reach: ``Authorization: Bearer <key>``, namespaces, admin rights.

Keys belong to an organization, maybe to some of its namespaces. Every request looks its key up
in the table (one lookup by the key's hash), so a revoked or expired key is refused at once by
every registry process; there is no in-process key cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

from fastapi import Depends, Request

from featurebus.common.ids import new_id
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.errors import Forbidden, NotFound, Unauthorized
from featurebus.registry.key_rules import Principal, due_for_touch, key_prefix, refusal, state
from featurebus.registry.records import ApiKey, Namespace, Organization, now
from featurebus.registry.tables import Tables

__all__ = [
    "Principal",
    "authenticate",
    "bootstrap_admin_key",
    "hash_key",
    "may_see_namespace",
    "principal",
    "require_admin",
    "require_unlimited",
    "resolve_namespace",
]

log = logging.getLogger("featurebus.registry.auth")
DEFAULT_ORG = "org_default"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(tables: Tables, authorization: str) -> Principal:
    """The caller of an ``Authorization`` header's key; Unauthorized naming what is wrong."""
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "missing API key",
            "send Authorization: Bearer <key>; a fresh install writes its admin key to .featurebus/admin-api-key",
        )
    record = await tables.api_keys.find_one(key_hash=hash_key(key.strip()))
    if record is None:
        raise Unauthorized("invalid API key", "check the key; keys are shown once, when created")
    at = now()
    refused = refusal(record.id, record.revoked_at, record.expires_at, at)
    if refused is not None:
        raise Unauthorized(str(refused), refused.hint)
    if due_for_touch(record.last_used_at, at):
        await tables.api_keys.update(record.id, {"last_used_at": at})
    return Principal(record.org_id, record.id, record.admin, record.namespaces)


async def principal(request: Request, c: Ctx = Depends(ctx)) -> Principal:
    """The FastAPI dependency of every authenticated route."""
    return await authenticate(c.tables, request.headers.get("authorization", ""))


def require_admin(who: Principal, action: str, hint: str | None = None) -> None:
    """403 unless the caller holds an org-admin key."""
    if not who.admin:
        scope = f"limited to namespaces {who.namespaces}" if who.limited else "not an admin key"
        raise Forbidden(f"{action} needs an org-admin key; key {who.key_id} is {scope}", hint)


def require_unlimited(who: Principal, action: str) -> None:
    """403 for a key limited to namespaces."""
    if who.limited:
        raise Forbidden(
            f"{action} needs a key for the whole organization; key {who.key_id} is limited to namespaces "
            f"{who.namespaces}",
            "ask an admin to do it, or for a key without namespaces",
        )


async def resolve_namespace(tables: Tables, who: Principal, ns: str) -> Namespace:
    """The namespace named by id or name, if this key may use it; NotFound otherwise (no tenant leaks)."""
    doc = await tables.namespaces.find_one(id=ns, org_id=who.org_id)
    if doc is None:
        doc = await tables.namespaces.find_one(namespace_name=ns, org_id=who.org_id)
    if doc is None or not who.may_use(doc.id):
        raise NotFound(f"namespace {ns!r} not found", "create it with POST /v1/namespaces")
    return doc


async def may_see_namespace(tables: Tables, who: Principal, namespace_id: str) -> bool:
    """Whether a resource of namespace ``namespace_id`` (found by some other id) is this key's to see."""
    if not who.limited:
        return True
    doc = await tables.namespaces.get(namespace_id)
    return doc is not None and doc.org_id == who.org_id and who.may_use(doc.id)


def _admin_key(key: str) -> ApiKey:
    return ApiKey(
        id=new_id("key"), org_id=DEFAULT_ORG, name="admin", key_hash=hash_key(key), admin=True, prefix=key_prefix(key)
    )


async def bootstrap_admin_key(tables: Tables, configured: str | None, data_dir: Path) -> None:
    """Make sure the installation has an admin key: the configured one, or a generated one on first start.

    Without a configured key, a new one is generated whenever no admin key is usable (none yet, or
    all of them revoked or expired), so an operator who lost every admin key restarts the registry.
    """
    if await tables.organizations.get(DEFAULT_ORG) is None:
        await tables.organizations.save(Organization(id=DEFAULT_ORG, name="default"))
    if configured:
        existing = await tables.api_keys.find_one(key_hash=hash_key(configured))
        if existing is None:
            await tables.api_keys.insert(_admin_key(configured))
        elif state(existing.revoked_at, existing.expires_at, now()) != "active":
            log.warning(
                "the configured admin key %s is %s", existing.id, state(existing.revoked_at, existing.expires_at, now())
            )
        return
    admins = await tables.api_keys.find(org_id=DEFAULT_ORG, admin=True)
    if any(state(a.revoked_at, a.expires_at, now()) == "active" for a in admins):
        return
    key = "fb_" + secrets.token_urlsafe(32)
    await tables.api_keys.insert(_admin_key(key))
    path = data_dir / "admin-api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    log.warning("created the admin API key of this installation; it is in %s", path.resolve())
