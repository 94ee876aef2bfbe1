"""Whether a plugin may run now (pure: no I/O): the one rule that creating a collection, starting a
batch and embedding a retriever's query share, and the :class:`PluginRef` a ready plugin runs as.
A disabled plugin (a namespace's own, or an organization plugin as its namespace enabled it) may not."""

from __future__ import annotations

from typing import Any

from featurebus.common.events import PluginManifest, PluginRef
from featurebus.registry.errors import Conflict
from featurebus.registry.records import Plugin

__all__ = ["plugin_ref", "ready_manifest"]


def ready_manifest(plugin: Plugin, where: str = "") -> PluginManifest:
    """The manifest of a plugin that is enabled, passed its scan and is deployed for batches.

    Conflict otherwise, naming what is missing (after ``where``, e.g. ``"feature_extractors[0]: "``)
    and the call that fixes it. An organization plugin comes as its namespace enabled it
    (:func:`~featurebus.registry.plugin_resolution.resolve_plugin`).
    """
    pid, org = plugin.plugin_id, plugin.organization_wide
    enable = f"POST .../plugins/org/{pid}/enable"
    if not plugin.enabled:
        state = "an organization plugin not enabled" if org else "disabled"
        raise Conflict(f"{where}plugin {pid} is {state} in this namespace", f"enable it with {enable}")
    if plugin.scan_status != "passed" or plugin.manifest is None:
        raise Conflict(
            f"{where}plugin {pid} has not passed its scan ({plugin.scan_status})",
            f"check GET /v1/plugins/{pid}" if org else f"check GET .../plugins/{pid}/status",
        )
    if not plugin.batch_enabled:
        raise Conflict(
            f"{where}plugin {pid} is not deployed for batch processing",
            f'enable it with {enable} and {{"deploy": true}}'
            if org
            else f"POST .../plugins/{pid}/deploy?deployment_type=batch_only",
        )
    return plugin.manifest


def plugin_ref(plugin: Plugin, parameters: dict[str, Any] | None = None) -> PluginRef:
    """What a worker needs to run ``plugin`` with ``parameters`` over its defaults; Conflict unless ready."""
    manifest = ready_manifest(plugin)
    return PluginRef(
        plugin_id=plugin.plugin_id,
        name=plugin.name,
        version=plugin.version,
        archive_uri=plugin.archive_uri,
        archive_sha256=plugin.archive_sha256,
        parameters={**plugin.params, **(parameters or {})},
        compute_profile=manifest.compute_profile,
        features=manifest.features,
        models=manifest.models,
        namespace_models=manifest.namespace_models,
        secrets=manifest.secrets,
        environment=manifest.environment,
    )
