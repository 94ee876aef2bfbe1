"""``/v1/namespaces``: create, list, get."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Namespace
from featurebus.registry.usecases import namespaces

router = APIRouter(prefix="/v1/namespaces")


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


class NamespaceView(BaseModel):
    namespace_id: str
    namespace_name: str
    description: str
    org_id: str
    created_at: datetime

    @classmethod
    def of(cls, ns: Namespace) -> NamespaceView:
        return cls(
            namespace_id=ns.id,
            namespace_name=ns.namespace_name,
            description=ns.description,
            org_id=ns.org_id,
            created_at=ns.created_at,
        )


@router.post("", status_code=201)
async def create_namespace(
    body: CreateNamespace, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> NamespaceView:
    return NamespaceView.of(await namespaces.create_namespace(c, who, body.namespace_name, body.description))


@router.get("")
async def list_namespaces(
    who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> Listing[NamespaceView]:
    found, total = await namespaces.list_namespaces(c, who, p.offset, p.limit)
    return Listing.of([NamespaceView.of(n) for n in found], total, p)


@router.get("/{ns}")
async def get_namespace(ns: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> NamespaceView:
    return NamespaceView.of(await namespaces.get_namespace(c, who, ns))
