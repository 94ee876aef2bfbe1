"""API keys, managed by org-admin keys: create (shown once), list (never the key), revoke."""

from __future__ import annotations

import secrets as pysecrets
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from featurebus.common.ids import new_id
from featurebus.registry.auth import Principal, hash_key, principal, require_admin, resolve_namespace
from featurebus.registry.documents import ApiKey, now
from featurebus.registry.errors import ApiError
from featurebus.registry.key_rules import as_utc, expiry, key_prefix, state
from featurebus.registry.paging import Page, fetch, page

router = APIRouter(prefix="/v1/organizations/api-keys")


async def admin(who: Principal = Depends(principal)) -> Principal:
    require_admin(who, "managing API keys")
    return who


def key_view(k: ApiKey) -> dict[str, Any]:
    """Everything about a key but the key: it is shown once, when created, and stored only as a hash."""
    return {
        "key_id": k.id,
        "prefix": k.prefix,
        "name": k.name,
        "admin": k.admin,
        "namespaces": k.namespaces,
        "created_at": k.created_at,
        "expires_at": as_utc(k.expires_at) if k.expires_at else None,
        "last_used_at": k.last_used_at,
        "revoked": k.revoked_at is not None,
        "revoked_at": k.revoked_at,
        "state": state(k.revoked_at, k.expires_at, now()),
    }


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=100)
    namespaces: list[str] | None = Field(default=None, max_length=1000)
    admin: bool = False
    expires_at: datetime | None = None
    expires_in_seconds: int | None = None


@router.post("", status_code=201)
async def create_key(body: CreateKey, who: Principal = Depends(admin)) -> dict[str, Any]:
    if body.admin and body.namespaces is not None:
        raise ApiError(422, "admin: an admin key cannot be limited to namespaces", "drop namespaces or admin")
    try:
        expires_at = expiry(body.expires_at, body.expires_in_seconds, now())
    except ValueError as exc:
        raise ApiError(422, str(exc), '{"name": "ci", "expires_in_seconds": 86400}') from None
    namespaces = None
    if body.namespaces is not None:
        namespaces = []
        for i, ns in enumerate(body.namespaces):
            try:
                namespaces.append((await resolve_namespace(who, ns)).id)
            except ApiError:
                raise ApiError(
                    422, f"namespaces[{i}]: namespace {ns!r} not found", "create it first with POST /v1/namespaces"
                ) from None
    key = "fb_" + pysecrets.token_urlsafe(32)
    record = ApiKey(
        id=new_id("key"),
        org_id=who.org_id,
        name=body.name,
        key_hash=hash_key(key),
        admin=body.admin,
        namespaces=sorted(set(namespaces)) if namespaces is not None else None,
        prefix=key_prefix(key),
        expires_at=expires_at,
    )
    await record.insert()
    return {**key_view(record), "key": key, "note": "the key is shown once; store it now"}


@router.get("")
async def list_keys(who: Principal = Depends(admin), p: Page = Depends(page)) -> dict[str, Any]:
    docs, total = await fetch(lambda: ApiKey.find(ApiKey.org_id == who.org_id), p)
    view = p.view([key_view(k) for k in docs], total)
    return {"api_keys": view.pop("results"), **view}


@router.post("/{key_id}/revoke")
async def revoke_key(key_id: str, who: Principal = Depends(admin)) -> dict[str, Any]:
    """Revoke at once: every registry process checks the key in MongoDB on every request."""
    record = await ApiKey.get(key_id)
    if record is None or record.org_id != who.org_id:
        raise ApiError(404, f"API key {key_id!r} not found", "GET /v1/organizations/api-keys lists the keys")
    if record.revoked_at is not None:
        return key_view(record)
    if record.admin:
        admins = await ApiKey.find(ApiKey.org_id == who.org_id, ApiKey.admin == True).to_list()  # noqa: E712
        others = [a for a in admins if a.id != record.id and state(a.revoked_at, a.expires_at, now()) == "active"]
        if not others:
            raise ApiError(
                409,
                f"API key {key_id} is the organization's last usable admin key",
                'create another admin key first: POST /v1/organizations/api-keys {"name": ..., "admin": true}',
            )
    record.revoked_at = now()
    await record.save()
    return key_view(record)
