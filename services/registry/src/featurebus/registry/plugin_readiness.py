"""Whether a plugin may run now (pure: no I/O): the one rule that creating a collection, starting a
batch and embedding a retriever's query share, and the :class:`PluginRef` a ready plugin runs as."""

from __future__ import annotations

from typing import Any

from featurebus.common.events import PluginManifest, PluginRef
from featurebus.registry.errors import Conflict
from featurebus.registry.records import Plugin

__all__ = ["plugin_ref", "ready_manifest"]


def ready_manifest(plugin: Plugin, where: str = "") -> PluginManifest:
    """The manifest of a plugin that passed its scan and is deployed for batches.

    Conflict otherwise, naming what is missing (after ``where``, e.g. ``"feature_extractors[0]: "``)
    and the call that fixes it.
    """
    if plugin.scan_status != "passed" or plugin.manifest is None:
        raise Conflict(
            f"{where}plugin {plugin.plugin_id} has not passed its scan ({plugin.scan_status})",
            f"check GET .../plugins/{plugin.plugin_id}/status",
        )
    if not plugin.batch_enabled:
        raise Conflict(
            f"{where}plugin {plugin.plugin_id} is not deployed for batch processing",
            f"POST .../plugins/{plugin.plugin_id}/deploy?deployment_type=batch_only",
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
    )
