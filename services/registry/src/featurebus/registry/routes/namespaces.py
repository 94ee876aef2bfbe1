"""Namespaces, API keys and organization secrets."""

from __future__ import annotations

import secrets as pysecrets
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo.errors import DuplicateKeyError

from featurebus.common.ids import new_id
from featurebus.registry.auth import Principal, hash_key, principal, resolve_namespace
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import ApiKey, NamespaceDoc, SecretDoc, now
from featurebus.registry.errors import ApiError

router = APIRouter()


def namespace_view(ns: NamespaceDoc) -> dict[str, Any]:
    return {
        "namespace_id": ns.id,
        "namespace_name": ns.namespace_name,
        "description": ns.description,
        "org_id": ns.org_id,
        "created_at": ns.created_at,
    }


class CreateNamespace(BaseModel):
    model_config = ConfigDict(extra="allow")
    namespace_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def accept_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "namespace_name" not in data and "name" in data:
            data = {**data, "namespace_name": data["name"]}
        return data


@router.post("/v1/namespaces", status_code=201)
async def create_namespace(body: CreateNamespace, who: Principal = Depends(principal)) -> dict[str, Any]:
    doc = NamespaceDoc(
        id=new_id("ns"), org_id=who.org_id, namespace_name=body.namespace_name, description=body.description
    )
    try:
        await doc.insert()
    except DuplicateKeyError:
        raise ApiError(409, f"namespace {body.namespace_name!r} exists", "pick another namespace_name") from None
    return namespace_view(doc)


@router.get("/v1/namespaces")
async def list_namespaces(who: Principal = Depends(principal)) -> dict[str, Any]:
    docs = await NamespaceDoc.find(NamespaceDoc.org_id == who.org_id).to_list()
    return {"results": [namespace_view(d) for d in docs if who.may_use(d)]}


@router.get("/v1/namespaces/{ns}")
async def get_namespace(ns: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return namespace_view(await resolve_namespace(who, ns))


class CreateKey(BaseModel):
    name: str = Field(min_length=1)
    namespaces: list[str] | None = None


@router.post("/v1/organizations/api-keys", status_code=201)
async def create_key(body: CreateKey, who: Principal = Depends(principal)) -> dict[str, Any]:
    if not who.admin:
        raise ApiError(403, "only an admin key can create keys")
    key = "fb_" + pysecrets.token_urlsafe(32)
    record = ApiKey(
        id=new_id("key"), org_id=who.org_id, name=body.name, key_hash=hash_key(key), namespaces=body.namespaces
    )
    await record.insert()
    return {
        "key_id": record.id,
        "name": record.name,
        "namespaces": record.namespaces,
        "key": key,
        "note": "the key is shown once; store it now",
    }


class SecretBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_name: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    secret_value: str

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


@router.get("/v1/organizations/secrets")
async def list_secrets(who: Principal = Depends(principal)) -> dict[str, Any]:
    docs = await SecretDoc.find(SecretDoc.org_id == who.org_id).to_list()
    return {"secrets": [secret_view(d) for d in docs]}


@router.post("/v1/organizations/secrets", status_code=201)
async def create_secret(body: SecretBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> dict[str, Any]:
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


@router.put("/v1/organizations/secrets/{name}")
async def update_secret(
    name: str, body: SecretBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    doc = await SecretDoc.get(f"{who.org_id}/{name}")
    if doc is None:
        raise ApiError(404, f"secret {name!r} not found", "create it with POST /v1/organizations/secrets")
    doc.ciphertext, doc.updated_at = c.cipher.encrypt(body.secret_value.encode()).decode(), now()
    await doc.save()
    return secret_view(doc)


@router.delete("/v1/organizations/secrets/{name}")
async def delete_secret(name: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    doc = await SecretDoc.get(f"{who.org_id}/{name}")
    if doc is None:
        raise ApiError(404, f"secret {name!r} not found")
    await doc.delete()
    return {"deleted": True, "secret_name": name}
