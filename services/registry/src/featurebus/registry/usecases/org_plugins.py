"""Organization plugins: uploaded once for every namespace (org-admin keys), enabled per namespace.

An organization plugin is a :class:`~featurebus.registry.records.Plugin` whose scope is the
organization (id ``<org_id>/<plugin_id>``). It is uploaded, confirmed and scanned exactly like a
namespace plugin (``plugins.create_upload`` / ``plugins.confirm_upload``; the scanner's verdict
lands through ``plugins.apply_scan``). A namespace enables it with ``params`` — the plugin's
default parameters there, which a collection's ``parameters`` override — and may disable it
again (a :class:`~featurebus.registry.records.PluginEnablement`); collections, batches and
retrievers see it through :func:`~featurebus.registry.plugin_resolution.resolve_plugin`.

Enable and disable (``POST /v1/namespaces/{ns}/plugins/org/{plugin_id}/enable|disable``) act on
the namespace's own plugin of that id when it has one, as resolution does: a namespace's own
plugin comes first. A disabled plugin, of either kind, cannot be used (plugin_readiness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurebus.registry.auth import Principal, require_admin, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, Invalid, NotFound
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.plugin_resolution import as_enabled_in, enablement_id, org_plugin_id
from featurebus.registry.records import Namespace, Plugin, PluginEnablement, PluginUpload, now
from featurebus.registry.usecases import plugins
from featurebus.registry.usecases.secret_grants import forget_org_plugin

__all__ = [
    "Available",
    "InNamespace",
    "OrgPlugin",
    "available_plugins",
    "confirm_org_plugin_upload",
    "create_org_plugin_upload",
    "delete_org_plugin",
    "get_org_plugin",
    "list_org_plugins",
    "set_enabled",
]

_ADMIN_HINT = "organization plugins are uploaded and deleted with an org-admin key"


@dataclass(frozen=True)
class OrgPlugin:
    """An organization plugin, and whether it is enabled and deployed in a namespace the key may use."""

    plugin: Plugin
    deployed: bool


@dataclass(frozen=True)
class InNamespace:
    """A plugin as ``namespace`` sees it (an organization plugin with this namespace's enablement)."""

    namespace: Namespace
    plugin: Plugin


@dataclass(frozen=True)
class Available:
    """An organization plugin as a namespace may enable it; ``shadowed`` when the namespace has a
    plugin of its own with this id, which it uses instead."""

    plugin: Plugin
    shadowed: bool


async def create_org_plugin_upload(
    c: Ctx,
    who: Principal,
    name: str,
    version: str,
    description: str = "",
    file_size_bytes: int | None = None,
) -> tuple[PluginUpload, str]:
    """An upload of an organization plugin and the presigned URL its archive is PUT to."""
    require_admin(who, "uploading an organization plugin", _ADMIN_HINT)
    return await plugins.create_upload(c, who, who.org_id, name, version, description, file_size_bytes)


async def confirm_org_plugin_upload(c: Ctx, who: Principal, upload_id: str) -> OrgPlugin:
    """Store the archive as the organization plugin and ask for its scan (as for a namespace plugin)."""
    require_admin(who, "confirming an organization plugin upload", _ADMIN_HINT)
    plugin = await plugins.confirm_upload(c, who, who.org_id, upload_id)
    return OrgPlugin(plugin, plugin.plugin_id in await _deployed_ids(c, who))


async def list_org_plugins(c: Ctx, who: Principal, offset: int, limit: int) -> tuple[list[OrgPlugin], int]:
    """Any key of the organization sees its plugins (the namespaces they are enabled in: only its own)."""
    found, total = await c.tables.plugins.page(offset, limit, org_id=who.org_id, namespace_id=who.org_id)
    deployed = await _deployed_ids(c, who)
    return [OrgPlugin(p, p.plugin_id in deployed) for p in found], total


async def get_org_plugin(c: Ctx, who: Principal, plugin_id: str) -> OrgPlugin:
    plugin = await _org_plugin(c, who, plugin_id)
    return OrgPlugin(plugin, plugin_id in await _deployed_ids(c, who))


async def _org_plugin(c: Ctx, who: Principal, plugin_id: str) -> Plugin:
    plugin = await c.tables.plugins.get(org_plugin_id(who.org_id, plugin_id))
    if plugin is None:
        raise NotFound(
            f"organization plugin {plugin_id!r} not found",
            "plugin ids are <name>_<X>_<Y>_<Z>; organization plugins are uploaded with POST /v1/plugins/uploads",
        )
    return plugin


async def _deployed_ids(c: Ctx, who: Principal) -> set[str]:
    """The organization plugins enabled and deployed in a namespace this key may use."""
    found = await c.tables.plugin_enablements.find(org_id=who.org_id, enabled=True, deploy=True)
    return {e.plugin_id for e in found if who.may_use(e.namespace_id)}


async def delete_org_plugin(c: Ctx, who: Principal, plugin_id: str) -> Plugin:
    """Refused while a namespace has it enabled or a collection uses it; forgets its enablements and grants."""
    require_admin(who, "deleting an organization plugin", _ADMIN_HINT)
    plugin = await _org_plugin(c, who, plugin_id)
    names = {n.id: n.namespace_name for n in await c.tables.namespaces.find(org_id=who.org_id)}
    enablements = await c.tables.plugin_enablements.find(org_id=who.org_id, plugin_id=plugin_id)
    enabled_in = sorted(names.get(e.namespace_id, e.namespace_id) for e in enablements if e.enabled)
    # A collection names a plugin id; in a namespace with a plugin of its own that id is not this plugin.
    own = {p.namespace_id for p in await c.tables.plugins.find(org_id=who.org_id, plugin_id=plugin_id)}
    users = [
        col.id
        for col in await c.tables.collections.find(org_id=who.org_id)
        if col.namespace_id not in own and any(fe.get("plugin_id") == plugin_id for fe in col.feature_extractors)
    ]
    if enabled_in or users:
        parts = [f"enabled in namespaces {enabled_in}"] if enabled_in else []
        parts += [f"used by collections {users}"] if users else []
        raise Conflict(
            f"organization plugin {plugin_id} is {' and '.join(parts)}",
            f"delete those collections and disable it in those namespaces "
            f"(POST /v1/namespaces/{{ns}}/plugins/org/{plugin_id}/disable) first",
        )
    await forget_org_plugin(c, plugin, own)  # its grants in namespaces that use it (not their own plugin's)
    for enablement in enablements:
        await c.tables.plugin_enablements.delete(enablement.id)
    await c.tables.plugins.delete(plugin.id)
    return plugin


async def available_plugins(c: Ctx, who: Principal, ns: str) -> tuple[Namespace, list[Available]]:
    """Every organization plugin, as this namespace has it enabled (or not)."""
    namespace = await resolve_namespace(c.tables, who, ns)
    org_plugins = await c.tables.plugins.find(org_id=who.org_id, namespace_id=who.org_id)
    enablements = {e.plugin_id: e for e in await c.tables.plugin_enablements.find(namespace_id=namespace.id)}
    own = {p.plugin_id for p in await c.tables.plugins.find(namespace_id=namespace.id)}
    return namespace, [
        Available(as_enabled_in(p, enablements.get(p.plugin_id)), p.plugin_id in own) for p in org_plugins
    ]


async def set_enabled(
    c: Ctx,
    who: Principal,
    ns: str,
    plugin_id: str,
    enabled: bool,
    params: dict[str, Any] | None = None,
    deploy: bool = True,
) -> InNamespace:
    """Enable (with ``params`` as the plugin's defaults, when given) or disable a plugin in a namespace.

    The namespace's own plugin of this id if it has one (``deploy`` does not apply: it is deployed
    with ``POST .../plugins/{plugin_id}/deploy``), else the organization's, deployed for batch
    processing here unless ``deploy`` is False. Without ``params`` the ones stored stay.
    """
    namespace = await resolve_namespace(c.tables, who, ns)
    if params is not None and json_size(params) > MAX_STORED_JSON:
        raise Invalid(f"params are over {MAX_STORED_JSON} bytes as JSON", "pass large inputs as blobs")
    own = await c.tables.plugins.get(f"{namespace.id}/{plugin_id}")
    if own is not None:
        return InNamespace(namespace, await _set_own(c, own, enabled, params))
    org_plugin = await c.tables.plugins.get(org_plugin_id(namespace.org_id, plugin_id))
    if org_plugin is None:
        raise NotFound(
            f"plugin {plugin_id!r} not found in namespace {ns!r} nor in the organization",
            "plugin ids are <name>_<X>_<Y>_<Z>; organization plugins are uploaded with POST /v1/plugins/uploads",
        )
    if enabled and org_plugin.scan_status == "failed":
        raise Conflict(
            f"organization plugin {plugin_id} failed its scan and cannot be enabled",
            "fix the violations and upload a new version: " + "; ".join(str(v) for v in org_plugin.violations[:3]),
        )
    key = enablement_id(namespace.id, plugin_id)
    existing = await c.tables.plugin_enablements.get(key)
    if existing is None and not enabled:
        return InNamespace(namespace, as_enabled_in(org_plugin, None))  # never enabled: nothing to disable
    record = PluginEnablement(
        id=key,
        org_id=namespace.org_id,
        namespace_id=namespace.id,
        plugin_id=plugin_id,
        enabled=enabled,
        params=params if params is not None else (existing.params if existing else {}),
        deploy=deploy if enabled else (existing.deploy if existing else False),
        created_at=existing.created_at if existing else now(),
    )
    await c.tables.plugin_enablements.save(record)
    return InNamespace(namespace, as_enabled_in(org_plugin, record))


async def _set_own(c: Ctx, plugin: Plugin, enabled: bool, params: dict[str, Any] | None) -> Plugin:
    changes: dict[str, Any] = {"enabled": enabled, "updated_at": now()}
    if params is not None:
        changes["params"] = params
    if not await c.tables.plugins.update(plugin.id, changes):  # deleted since it was read
        raise NotFound(f"plugin {plugin.plugin_id!r} not found in this namespace")
    return plugin.model_copy(update=changes)
