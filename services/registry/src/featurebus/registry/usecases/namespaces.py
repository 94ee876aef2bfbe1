"""Namespaces: created by keys of the whole organization, seen only by keys allowed to use them."""

from __future__ import annotations

from featurebus.common.ids import new_id
from featurebus.registry.auth import Principal, require_unlimited, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict
from featurebus.registry.records import Namespace
from featurebus.registry.tables import AnyOf, Duplicate

__all__ = ["create_namespace", "get_namespace", "list_namespaces"]


async def create_namespace(c: Ctx, who: Principal, name: str, description: str) -> Namespace:
    require_unlimited(who, "creating a namespace")
    namespace = Namespace(id=new_id("ns"), org_id=who.org_id, namespace_name=name, description=description)
    try:
        await c.tables.namespaces.insert(namespace)
    except Duplicate:
        raise Conflict(f"namespace {name!r} exists", "pick another namespace_name") from None
    return namespace


async def list_namespaces(c: Ctx, who: Principal, offset: int, limit: int) -> tuple[list[Namespace], int]:
    if who.namespaces is None:
        return await c.tables.namespaces.page(offset, limit, org_id=who.org_id)
    return await c.tables.namespaces.page(offset, limit, org_id=who.org_id, id=AnyOf(who.namespaces))


async def get_namespace(c: Ctx, who: Principal, ns: str) -> Namespace:
    return await resolve_namespace(c.tables, who, ns)
