"""API keys: ``Authorization: Bearer <key>``; keys belong to an organization, maybe to namespaces."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from featurebus.common.ids import new_id
from featurebus.registry.documents import ApiKey, NamespaceDoc, Organization
from featurebus.registry.errors import ApiError

__all__ = ["Principal", "bootstrap_admin_key", "hash_key", "principal", "resolve_namespace"]

log = logging.getLogger("featurebus.registry.auth")
DEFAULT_ORG = "org_default"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Principal:
    org_id: str
    key_id: str
    admin: bool
    namespaces: list[str] | None

    def may_use(self, namespace: NamespaceDoc) -> bool:
        return self.namespaces is None or namespace.id in self.namespaces or namespace.namespace_name in self.namespaces


async def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401,
            "missing API key",
            "send Authorization: Bearer <key>; a fresh install writes its admin key to .featurebus/admin-api-key",
        )
    record = await ApiKey.find_one(ApiKey.key_hash == hash_key(key.strip()))
    if record is None:
        raise ApiError(401, "invalid API key", "check the key; keys are shown once, when created")
    return Principal(record.org_id, record.id, record.admin, record.namespaces)


async def resolve_namespace(who: Principal, ns: str) -> NamespaceDoc:
    """The namespace named by id or name, if this key may use it; 404 otherwise (no tenant leaks)."""
    doc = await NamespaceDoc.find_one(NamespaceDoc.id == ns, NamespaceDoc.org_id == who.org_id)
    if doc is None:
        doc = await NamespaceDoc.find_one(NamespaceDoc.namespace_name == ns, NamespaceDoc.org_id == who.org_id)
    if doc is None or not who.may_use(doc):
        raise ApiError(404, f"namespace {ns!r} not found", "create it with POST /v1/namespaces")
    return doc


async def bootstrap_admin_key(configured: str | None, data_dir: Path) -> None:
    """Make sure the installation has an admin key: the configured one, or a generated one on first start."""
    if await Organization.get(DEFAULT_ORG) is None:
        await Organization(id=DEFAULT_ORG, name="default").insert()
    if configured:
        if await ApiKey.find_one(ApiKey.key_hash == hash_key(configured)) is None:
            await ApiKey(
                id=new_id("key"), org_id=DEFAULT_ORG, name="admin", key_hash=hash_key(configured), admin=True
            ).insert()
        return
    if await ApiKey.find_one(ApiKey.admin == True) is not None:  # noqa: E712 - a query expression
        return
    key = "fb_" + secrets.token_urlsafe(32)
    await ApiKey(id=new_id("key"), org_id=DEFAULT_ORG, name="admin", key_hash=hash_key(key), admin=True).insert()
    path = data_dir / "admin-api-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    log.warning("created the admin API key of this installation; it is in %s", path.resolve())
