"""Secret grants: which organization secrets one plugin's code receives in one namespace.

A plugin declares the secret names it reads (its manifest's ``secrets``, filled by the scan); an
org admin grants some of them (``PUT /v1/namespaces/{ns}/plugins/{plugin_id}/secrets``). A worker
gets only the granted names that the plugin still declares and the organization still has
(:func:`granted_values`, served to inference by the internal secrets API). A plugin is found as
collections find it: the namespace's own first, else the organization's plugin of that id, so an
organization plugin gets grants per namespace it runs in.

A grant is bound to the plugin version's archive and goes when the plugin is deleted
(:func:`forget_plugin`, :func:`forget_org_plugin`): an archive uploaded later under the same id
starts with none.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cryptography.fernet import InvalidToken

from featurebus.registry.auth import Principal, require_admin, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Internal, Invalid, NotFound
from featurebus.registry.plugin_resolution import resolve_plugin
from featurebus.registry.records import Namespace, Plugin, SecretGrant, now

__all__ = [
    "PluginSecrets",
    "declared_secrets",
    "forget_org_plugin",
    "forget_plugin",
    "grant_id",
    "granted_values",
    "plugin_secrets",
    "replace_grant",
    "revoke_grant",
]

log = logging.getLogger("featurebus.registry")

_HINT = "secret grants are managed with an org-admin key; plugins read them through container.secrets"


@dataclass(frozen=True)
class PluginSecrets:
    """What a plugin declares and what it was granted, in the namespace it runs in."""

    namespace_id: str
    plugin_id: str
    declared: list[str]
    granted: list[str]


def grant_id(org_id: str, namespace_id: str, plugin_id: str) -> str:
    return f"{org_id}/{namespace_id}/{plugin_id}"


def declared_secrets(plugin: Plugin) -> list[str]:
    """The secret names the plugin's manifest declares; none until its scan has passed."""
    if plugin.scan_status != "passed" or plugin.manifest is None:
        return []
    return list(plugin.manifest.secrets)


async def _plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> tuple[Namespace, Plugin]:
    namespace = await resolve_namespace(c.tables, who, ns)
    plugin = await resolve_plugin(c.tables, namespace, plugin_id)
    if plugin is None:
        raise NotFound(
            f"plugin {plugin_id!r} not found in namespace {ns!r}",
            "plugin ids are <name>_<X>_<Y>_<Z>, e.g. text_embed_1_0_0",
        )
    return namespace, plugin


async def _grant(c: Ctx, namespace: Namespace, plugin: Plugin) -> SecretGrant | None:
    """The plugin's grant, if it was made for this very archive."""
    grant = await c.tables.secret_grants.get(grant_id(namespace.org_id, namespace.id, plugin.plugin_id))
    return grant if grant is not None and grant.archive_sha256 == plugin.archive_sha256 else None


def _view(namespace: Namespace, plugin: Plugin, grant: SecretGrant | None) -> PluginSecrets:
    granted = list(grant.secret_names) if grant is not None else []
    return PluginSecrets(namespace.id, plugin.plugin_id, declared_secrets(plugin), granted)


async def plugin_secrets(c: Ctx, who: Principal, ns: str, plugin_id: str) -> PluginSecrets:
    """Any key that may use the namespace sees the names (never a value)."""
    namespace, plugin = await _plugin(c, who, ns, plugin_id)
    return _view(namespace, plugin, await _grant(c, namespace, plugin))


async def replace_grant(c: Ctx, who: Principal, ns: str, plugin_id: str, names: list[str]) -> PluginSecrets:
    """The plugin is granted exactly ``names`` (an empty list revokes every grant)."""
    namespace, plugin = await _plugin(c, who, ns, plugin_id)
    require_admin(who, "granting secrets to a plugin", _HINT)
    wanted = list(dict.fromkeys(names))
    declared = declared_secrets(plugin)
    for i, name in enumerate(wanted):
        if name not in declared:
            unscanned = "" if plugin.scan_status == "passed" else f" (its scan is {plugin.scan_status}: none yet)"
            raise Invalid(
                f"secret_names[{i}]: plugin {plugin.plugin_id} does not declare secret {name!r}{unscanned}",
                f'declare it in the manifest\'s `secrets` list or read it as container.secrets.get("{name}") '
                "in the plugin's code, then upload the plugin again",
            )
        if await c.tables.secrets.get(f"{namespace.org_id}/{name}") is None:
            raise Invalid(
                f"secret_names[{i}]: the organization has no secret {name!r}",
                "create it with POST /v1/organizations/secrets",
            )
    gid = grant_id(namespace.org_id, namespace.id, plugin.plugin_id)
    if not wanted:
        await c.tables.secret_grants.delete(gid)
        return _view(namespace, plugin, None)
    existing = await _grant(c, namespace, plugin)
    grant = SecretGrant(
        id=gid,
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        plugin_id=plugin.plugin_id,
        archive_sha256=plugin.archive_sha256,
        secret_names=wanted,
        **({"created_at": existing.created_at} if existing is not None else {}),
    )
    await c.tables.secret_grants.save(grant)
    # A delete of the plugin between the read and the save forgot its grants before this one landed.
    still = await resolve_plugin(c.tables, namespace, plugin.plugin_id)
    if still is None or still.archive_sha256 != plugin.archive_sha256:
        await c.tables.secret_grants.delete(gid)
        raise NotFound(f"plugin {plugin.plugin_id!r} was deleted meanwhile", "upload it again")
    return _view(namespace, plugin, grant)


async def revoke_grant(c: Ctx, who: Principal, ns: str, plugin_id: str, name: str) -> PluginSecrets:
    """The plugin no longer gets secret ``name``; NotFound if it was not granted."""
    namespace, plugin = await _plugin(c, who, ns, plugin_id)
    require_admin(who, "revoking a plugin's secret", _HINT)
    grant = await _grant(c, namespace, plugin)
    if grant is None or name not in grant.secret_names:
        raise NotFound(
            f"secret {name!r} is not granted to plugin {plugin.plugin_id}",
            f"list its grants with GET /v1/namespaces/{ns}/plugins/{plugin.plugin_id}/secrets",
        )
    grant.secret_names = [n for n in grant.secret_names if n != name]
    if grant.secret_names:
        grant.updated_at = now()
        await c.tables.secret_grants.save(grant)
    else:
        await c.tables.secret_grants.delete(grant.id)
        grant = None
    return _view(namespace, plugin, grant)


async def forget_plugin(c: Ctx, plugin: Plugin) -> None:
    """A namespace plugin is being deleted: its grants go with it."""
    await c.tables.secret_grants.delete(grant_id(plugin.org_id, plugin.namespace_id, plugin.plugin_id))


async def forget_org_plugin(c: Ctx, plugin: Plugin, own_namespaces: set[str]) -> None:
    """An organization plugin is being deleted: its grants in every namespace without a plugin of its own by that id."""
    for grant in await c.tables.secret_grants.find(org_id=plugin.org_id, plugin_id=plugin.plugin_id):
        if grant.namespace_id not in own_namespaces:
            await c.tables.secret_grants.delete(grant.id)


async def granted_values(c: Ctx, namespace_id: str, plugin_id: str) -> dict[str, str]:
    """For a worker of inference: the decrypted values of the secrets granted to the plugin.

    Only names granted, still declared by the plugin and still held by the organization: a deleted
    organization secret just drops out. NotFound for an unknown namespace or plugin.
    """
    namespace = await c.tables.namespaces.get(namespace_id)
    if namespace is None:
        raise NotFound(f"namespace {namespace_id!r} not found")
    plugin = await resolve_plugin(c.tables, namespace, plugin_id)
    if plugin is None:
        raise NotFound(f"plugin {plugin_id!r} not found in namespace {namespace_id!r}")
    grant = await _grant(c, namespace, plugin)
    if grant is None:
        return {}
    declared = set(declared_secrets(plugin))
    values = {}
    for name in grant.secret_names:
        secret = await c.tables.secrets.get(f"{namespace.org_id}/{name}") if name in declared else None
        if secret is None:
            continue
        try:
            values[name] = c.cipher.decrypt(secret.ciphertext.encode()).decode()
        except InvalidToken:
            log.error("secret %s of %s cannot be decrypted with this registry's key", name, namespace.org_id)
            raise Internal(
                f"secret {name!r} cannot be decrypted with the registry's secrets key",
                "every registry process needs the same FEATUREBUS_SECRETS_KEY (or DATA_DIR/secrets.key); "
                f"set the secret again with PUT /v1/organizations/secrets/{name}",
            ) from None
    return values
