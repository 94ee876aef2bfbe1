"""Namespaces: created by keys of the whole organization, seen only by keys allowed to use them."""

from __future__ import annotations

from typing import Any

from beanie.operators import In
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pymongo.errors import DuplicateKeyError

from featurebus.common.ids import new_id
from featurebus.registry.auth import Principal, principal, require_unlimited, resolve_namespace
from featurebus.registry.documents import NamespaceDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.paging import Page, fetch, page

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
    description: str = Field(default="", max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def accept_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "namespace_name" not in data and "name" in data:
            data = {**data, "namespace_name": data["name"]}
        return data


@router.post("/v1/namespaces", status_code=201)
async def create_namespace(body: CreateNamespace, who: Principal = Depends(principal)) -> dict[str, Any]:
    require_unlimited(who, "creating a namespace")
    doc = NamespaceDoc(
        id=new_id("ns"), org_id=who.org_id, namespace_name=body.namespace_name, description=body.description
    )
    try:
        await doc.insert()
    except DuplicateKeyError:
        raise ApiError(409, f"namespace {body.namespace_name!r} exists", "pick another namespace_name") from None
    return namespace_view(doc)


@router.get("/v1/namespaces")
async def list_namespaces(who: Principal = Depends(principal), p: Page = Depends(page)) -> dict[str, Any]:
    def find() -> Any:
        query = NamespaceDoc.find(NamespaceDoc.org_id == who.org_id)
        return query if who.namespaces is None else query.find(In(NamespaceDoc.id, who.namespaces))

    docs, total = await fetch(find, p)
    return p.view([namespace_view(d) for d in docs if who.may_use(d.id)], total)


@router.get("/v1/namespaces/{ns}")
async def get_namespace(ns: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return namespace_view(await resolve_namespace(who, ns))
