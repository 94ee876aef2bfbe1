"""Organization secrets: managed by org-admin keys only; values are encrypted and never returned.

A key limited to namespaces cannot list, create, overwrite or delete them: its plugins may use a
secret (``container.secrets``), but the key itself cannot see or change what the whole
organization shares.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo.errors import DuplicateKeyError

from featurebus.registry.auth import Principal, principal, require_admin
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import SecretDoc, now
from featurebus.registry.errors import ApiError
from featurebus.registry.paging import Page, fetch, page

router = APIRouter(prefix="/v1/organizations/secrets")

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_SECRET_BYTES = 64 * 1024
HINT = "secrets are shared by the whole organization; plugins use them through container.secrets"


async def admin(who: Principal = Depends(principal)) -> Principal:
    require_admin(who, "managing organization secrets", HINT)
    return who


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_name: str | None = Field(default=None, pattern=NAME, max_length=128)
    secret_value: str = Field(max_length=MAX_SECRET_BYTES)

    @model_validator(mode="before")
    @classmethod
    def accept_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("secret_name", data.get("name"))
            data.setdefault("secret_value", data.get("value"))
        return data


def secret_view(doc: SecretDoc) -> dict[str, Any]:
    return {"secret_name": doc.name, "created_at": doc.created_at, "updated_at": doc.updated_at}


@router.get("")
async def list_secrets(who: Principal = Depends(admin), p: Page = Depends(page)) -> dict[str, Any]:
    docs, total = await fetch(lambda: SecretDoc.find(SecretDoc.org_id == who.org_id), p)
    view = p.view([secret_view(d) for d in docs], total)
    return {"secrets": view.pop("results"), **view}


@router.post("", status_code=201)
async def create_secret(body: SecretBody, who: Principal = Depends(admin), c: Ctx = Depends(ctx)) -> dict[str, Any]:
    if not body.secret_name:
        raise ApiError(422, "secret_name is required", '{"secret_name": "EXTERNAL_API_KEY", "secret_value": "..."}')
    doc = SecretDoc(
        id=f"{who.org_id}/{body.secret_name}",
        org_id=who.org_id,
        name=body.secret_name,
        ciphertext=c.cipher.encrypt(body.secret_value.encode()).decode(),
    )
    try:
        await doc.insert()
    except DuplicateKeyError:
        raise ApiError(
            409,
            f"secret {body.secret_name!r} exists",
            f"update it with PUT /v1/organizations/secrets/{body.secret_name}",
        ) from None
    return secret_view(doc)


@router.put("/{name}")
async def update_secret(
    name: str, body: SecretBody, who: Principal = Depends(admin), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    doc = await SecretDoc.get(f"{who.org_id}/{name}")
    if doc is None:
        raise ApiError(404, f"secret {name!r} not found", "create it with POST /v1/organizations/secrets")
    doc.ciphertext, doc.updated_at = c.cipher.encrypt(body.secret_value.encode()).decode(), now()
    await doc.save()
    return secret_view(doc)


@router.delete("/{name}")
async def delete_secret(name: str, who: Principal = Depends(admin)) -> dict[str, Any]:
    doc = await SecretDoc.get(f"{who.org_id}/{name}")
    if doc is None:
        raise ApiError(404, f"secret {name!r} not found")
    await doc.delete()
    return {"deleted": True, "secret_name": name}
