"""Which plugin a plugin id names in a namespace: the one lookup that creating a collection,
starting a batch and resolving a retriever's ``feature_uri`` share.

A namespace's own plugin comes first. Otherwise the organization's plugin of that id, as this
namespace enabled it: its enable ``params`` become the plugin's default parameters (a
collection's ``parameters`` override them, see :func:`~featurebus.registry.plugin_readiness.plugin_ref`),
and a plugin never enabled here, or disabled, comes back with ``enabled`` False, so that
readiness refuses it naming the call that enables it.
"""

from __future__ import annotations

from featurebus.registry.records import Namespace, Plugin, PluginEnablement
from featurebus.registry.tables import Tables

__all__ = ["BATCH_ONLY", "as_enabled_in", "enablement_id", "org_plugin_id", "resolve_plugin"]

BATCH_ONLY = "batch_only"


def org_plugin_id(org_id: str, plugin_id: str) -> str:
    """The record id of an organization plugin (its scope is the organization)."""
    return f"{org_id}/{plugin_id}"


def enablement_id(namespace_id: str, plugin_id: str) -> str:
    return f"{namespace_id}/{plugin_id}"


def as_enabled_in(org_plugin: Plugin, enablement: PluginEnablement | None) -> Plugin:
    """The organization plugin as the namespace of ``enablement`` sees it (pure: no I/O)."""
    if enablement is None:
        changes = {"enabled": False, "params": {}, "batch_enabled": False, "deployment_type": None}
    else:
        changes = {
            "enabled": enablement.enabled,
            "params": enablement.params,
            "batch_enabled": enablement.deploy,
            "deployment_type": BATCH_ONLY if enablement.deploy else None,
        }
    return org_plugin.model_copy(update=changes)


async def resolve_plugin(tables: Tables, namespace: Namespace, plugin_id: str) -> Plugin | None:
    """The namespace's own plugin ``plugin_id``, else the organization's as enabled here; None if neither exists."""
    own = await tables.plugins.get(f"{namespace.id}/{plugin_id}")
    if own is not None:
        return own
    org_plugin = await tables.plugins.get(org_plugin_id(namespace.org_id, plugin_id))
    if org_plugin is None:
        return None
    return as_enabled_in(org_plugin, await tables.plugin_enablements.get(enablement_id(namespace.id, plugin_id)))
