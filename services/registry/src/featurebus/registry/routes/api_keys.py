"""``/v1/organizations/api-keys``: create (the key is shown once), list (never the key), revoke."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.key_rules import state
from featurebus.registry.paging import Page, page
from featurebus.registry.records import ApiKey, now
from featurebus.registry.usecases import api_keys

router = APIRouter(prefix="/v1/organizations/api-keys")


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=100)
    namespaces: list[str] | None = Field(default=None, max_length=1000)
    admin: bool = False
    expires_at: datetime | None = None
    expires_in_seconds: int | None = None


class KeyView(BaseModel):
    """Everything about a key but the key: it is shown once, when created, and stored only as a hash."""

    key_id: str
    prefix: str | None
    name: str
    admin: bool
    namespaces: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool
    revoked_at: datetime | None
    state: str

    @classmethod
    def of(cls, k: ApiKey) -> KeyView:
        return cls(
            key_id=k.id,
            prefix=k.prefix,
            name=k.name,
            admin=k.admin,
            namespaces=k.namespaces,
            created_at=k.created_at,
            expires_at=k.expires_at,
            last_used_at=k.last_used_at,
            revoked=k.revoked_at is not None,
            revoked_at=k.revoked_at,
            state=state(k.revoked_at, k.expires_at, now()),
        )


class CreatedKey(KeyView):
    key: str
    note: str = "the key is shown once; store it now"


class KeyListing(BaseModel):
    api_keys: list[KeyView]
    total: int
    offset: int
    limit: int


@router.post("", status_code=201)
async def create_key(body: CreateKey, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> CreatedKey:
    record, key = await api_keys.create_key(c, who, **body.model_dump())
    return CreatedKey(**KeyView.of(record).model_dump(), key=key)


@router.get("")
async def list_keys(who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)) -> KeyListing:
    found, total = await api_keys.list_keys(c, who, p.offset, p.limit)
    return KeyListing(api_keys=[KeyView.of(k) for k in found], total=total, offset=p.offset, limit=p.limit)


@router.post("/{key_id}/revoke")
async def revoke_key(key_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> KeyView:
    """Revoke at once: every registry process checks the key on every request."""
    return KeyView.of(await api_keys.revoke_key(c, who, key_id))
