"""Organization secrets: managed by org-admin keys only; values are encrypted at rest, never returned.

A key limited to namespaces cannot list, create, overwrite or delete them: its plugins may use a
secret (``container.secrets``), but the key itself cannot see or change what the whole
organization shares.
"""

from __future__ import annotations

from featurebus.registry.auth import Principal, require_admin
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, NotFound
from featurebus.registry.records import Secret, now
from featurebus.registry.tables import Duplicate

__all__ = ["create_secret", "delete_secret", "list_secrets", "update_secret"]

HINT = "secrets are shared by the whole organization; plugins use them through container.secrets"


def _admin(who: Principal) -> None:
    require_admin(who, "managing organization secrets", HINT)


async def list_secrets(c: Ctx, who: Principal, offset: int, limit: int) -> tuple[list[Secret], int]:
    _admin(who)
    return await c.tables.secrets.page(offset, limit, org_id=who.org_id)


async def create_secret(c: Ctx, who: Principal, name: str, value: str) -> Secret:
    _admin(who)
    secret = Secret(
        id=f"{who.org_id}/{name}", org_id=who.org_id, name=name, ciphertext=c.cipher.encrypt(value.encode()).decode()
    )
    try:
        await c.tables.secrets.insert(secret)
    except Duplicate:
        raise Conflict(f"secret {name!r} exists", f"update it with PUT /v1/organizations/secrets/{name}") from None
    return secret


async def _secret(c: Ctx, who: Principal, name: str) -> Secret:
    _admin(who)
    secret = await c.tables.secrets.get(f"{who.org_id}/{name}")
    if secret is None:
        raise NotFound(f"secret {name!r} not found", "create it with POST /v1/organizations/secrets")
    return secret


async def update_secret(c: Ctx, who: Principal, name: str, value: str) -> Secret:
    secret = await _secret(c, who, name)
    secret.ciphertext, secret.updated_at = c.cipher.encrypt(value.encode()).decode(), now()
    await c.tables.secrets.save(secret)
    return secret


async def delete_secret(c: Ctx, who: Principal, name: str) -> None:
    await c.tables.secrets.delete((await _secret(c, who, name)).id)
