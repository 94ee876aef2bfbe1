"""``/v1/organizations/secrets``: org-admin keys only; values are encrypted and never returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Page, page
from featurebus.registry.records import Secret
from featurebus.registry.usecases import secrets

router = APIRouter(prefix="/v1/organizations/secrets")

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_SECRET_BYTES = 64 * 1024


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_value: str = Field(max_length=MAX_SECRET_BYTES)

    @model_validator(mode="before")
    @classmethod
    def accept_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("secret_name", data.get("name"))
            data.setdefault("secret_value", data.get("value"))
        return data


class CreateSecret(SecretValue):
    secret_name: str = Field(pattern=NAME, max_length=128)


class SecretView(BaseModel):
    secret_name: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, s: Secret) -> SecretView:
        return cls(secret_name=s.name, created_at=s.created_at, updated_at=s.updated_at)


class SecretListing(BaseModel):
    secrets: list[SecretView]
    total: int
    offset: int
    limit: int


class Deleted(BaseModel):
    deleted: bool = True
    secret_name: str


@router.get("")
async def list_secrets(
    who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> SecretListing:
    found, total = await secrets.list_secrets(c, who, p.offset, p.limit)
    return SecretListing(secrets=[SecretView.of(s) for s in found], total=total, offset=p.offset, limit=p.limit)


@router.post("", status_code=201)
async def create_secret(body: CreateSecret, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> SecretView:
    return SecretView.of(await secrets.create_secret(c, who, body.secret_name, body.secret_value))


@router.put("/{name}")
async def update_secret(
    name: str, body: SecretValue, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> SecretView:
    return SecretView.of(await secrets.update_secret(c, who, name, body.secret_value))


@router.delete("/{name}")
async def delete_secret(name: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> Deleted:
    await secrets.delete_secret(c, who, name)
    return Deleted(secret_name=name)
