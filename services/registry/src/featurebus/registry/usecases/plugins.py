"""Plugins: presigned upload, confirm (→ scan), scan verdicts, deploy, undeploy, delete, enable/disable.

A plugin version is one record per namespace (id ``<namespace_id>/<plugin_id>``). Its archive is
scanned asynchronously (``plugin.uploaded`` → scanner → ``plugin.scanned``); writes that may meet
the verdict on the way are field-wise compare-and-sets, so neither overwrites the other.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from featurebus.common import ids
from featurebus.common.events import PluginScanned, PluginUploaded
from featurebus.common.objectstore import sha256_hex
from featurebus.registry.auth import Principal, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import Conflict, DomainError, Invalid, NotFound, NotSupported, TooLarge
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.records import Plugin, PluginUpload, now
from featurebus.registry.tables import Duplicate

__all__ = [
    "apply_scan",
    "confirm_plugin_upload",
    "create_plugin_upload",
    "delete_plugin",
    "deploy_plugin",
    "get_plugin",
    "list_plugins",
    "set_enabled",
    "undeploy_plugin",
]

log = logging.getLogger("featurebus.registry")

BATCH_ONLY = "batch_only"
_WEIGHTS_HINT = "don't bundle model weights; load them at init time"


async def get_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> Plugin:
    namespace = await resolve_namespace(c.tables, who, ns)
    plugin = await c.tables.plugins.get(f"{namespace.id}/{plugin_id}")
    if plugin is None:
        raise _missing(ns, plugin_id)
    return plugin


def _missing(ns: str, plugin_id: str) -> NotFound:
    return NotFound(
        f"plugin {plugin_id!r} not found in namespace {ns!r}",
        "plugin ids are <name>_<X>_<Y>_<Z>, e.g. text_embed_1_0_0",
    )


async def list_plugins(c: Ctx, who: Principal, ns: str, offset: int, limit: int) -> tuple[list[Plugin], int]:
    namespace = await resolve_namespace(c.tables, who, ns)
    return await c.tables.plugins.page(offset, limit, namespace_id=namespace.id)


# ----------------------------------------------------------------------------- upload and scan


async def create_plugin_upload(
    c: Ctx,
    who: Principal,
    ns: str,
    name: str,
    version: str,
    description: str = "",
    file_size_bytes: int | None = None,
) -> tuple[PluginUpload, str]:
    """The upload (its version normalised) and the presigned URL the archive is PUT to."""
    namespace = await resolve_namespace(c.tables, who, ns)
    try:
        version = ids.normalize_version(version)
    except ValueError as exc:
        raise Invalid(f"version: {exc}") from None
    if file_size_bytes and file_size_bytes > c.settings.max_archive_bytes:
        raise TooLarge(f"file_size_bytes {file_size_bytes} exceeds the 500 MB archive limit", _WEIGHTS_HINT)
    upload_id = ids.new_id("upl")
    ttl = timedelta(seconds=c.settings.presigned_url_ttl_s)
    upload = PluginUpload(
        id=upload_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        plugin_id=ids.plugin_id(name, version),
        name=name,
        version=version,
        description=description,
        key=f"uploads/{upload_id}.zip",
        expires_at=now() + ttl,
    )
    await c.tables.plugin_uploads.insert(upload)
    return upload, await c.store.presigned_put(upload.key, ttl)


async def _uploaded_archive(c: Ctx, upload: PluginUpload) -> bytes:
    size = await c.store.size(upload.key)
    if size is None:
        raise Conflict("no archive was uploaded for this upload_id", "PUT the zip to presigned_url first, then confirm")
    limit = c.settings.max_archive_bytes
    if size > limit:
        raise _archive_too_large(size)
    data = await c.store.get_bytes(c.store.uri(upload.key))
    if len(data) > limit:  # put again, larger, since the size was read
        raise _archive_too_large(len(data))
    return data


def _archive_too_large(size: int) -> TooLarge:
    return TooLarge(f"archive is {size} bytes; the limit is 500 MB", _WEIGHTS_HINT)


async def confirm_plugin_upload(c: Ctx, who: Principal, ns: str, upload_id: str) -> Plugin:
    """Store the uploaded archive as the plugin version and ask for its scan (``plugin.uploaded``).

    Idempotent: the same archive again answers the stored plugin. Another archive replaces a
    version whose scan has not passed; a passed version is immutable.
    """
    namespace = await resolve_namespace(c.tables, who, ns)
    upload = await c.tables.plugin_uploads.get(upload_id)
    if upload is None or upload.namespace_id != namespace.id:
        raise NotFound(f"upload {upload_id!r} not found", "start with POST .../plugins/uploads")
    data = await _uploaded_archive(c, upload)
    digest = sha256_hex(data)
    archive_key = f"plugins/{namespace.id}/{upload.plugin_id}/{digest}.zip"
    plugin = Plugin(
        id=f"{namespace.id}/{upload.plugin_id}",
        org_id=who.org_id,
        namespace_id=namespace.id,
        plugin_id=upload.plugin_id,
        name=upload.name,
        version=upload.version,
        description=upload.description,
        archive_uri=c.store.uri(archive_key),
        archive_sha256=digest,
        size_bytes=len(data),
        status="QUEUED",
        scan_status="scanning",
    )
    archived = False
    while True:  # retried only after another writer's change: ends in a store, the stored plugin or a refusal
        existing = await c.tables.plugins.get(plugin.id)
        if existing is not None and existing.archive_sha256 == digest:
            return existing
        if existing is not None and existing.scan_status == "passed":
            raise Conflict(
                f"{upload.name} version {upload.version} exists with another archive",
                "bump the version: published versions are immutable",
            )
        if not archived:
            await c.store.put_bytes(archive_key, data, "application/zip")
            archived = True
        if await _store(c, plugin, existing):
            break
    await c.bus.publish(
        PluginUploaded(
            org_id=who.org_id,
            namespace_id=namespace.id,
            plugin_id=plugin.plugin_id,
            upload_id=upload_id,
            name=plugin.name,
            version=plugin.version,
            archive_uri=plugin.archive_uri,
            archive_sha256=digest,
            size_bytes=plugin.size_bytes,
        ),
        key=plugin.plugin_id,
    )
    return plugin


async def _store(c: Ctx, plugin: Plugin, existing: Plugin | None) -> bool:
    """Insert the plugin, or replace ``existing`` only if it is still as read (a verdict may land meanwhile)."""
    if existing is None:
        try:
            await c.tables.plugins.insert(plugin)
        except Duplicate:
            return False
        return True
    return await c.tables.plugins.update(
        plugin.id,
        plugin.model_dump(exclude={"id"}),
        archive_sha256=existing.archive_sha256,
        scan_status=existing.scan_status,
    )


async def apply_scan(c: Ctx, event: PluginScanned) -> None:
    """Store the scanner's verdict, violations and manifest; carry out a batch deploy queued meanwhile."""
    plugin = await c.tables.plugins.get(f"{event.namespace_id}/{event.plugin_id}")
    if plugin is None or plugin.archive_sha256 != event.archive_sha256:
        log.info("stale scan verdict for %s ignored", event.plugin_id)
        return
    errors = [str(v) for v in event.violations if v.severity == "ERROR"]
    # Only the scan's fields: a deploy queued meanwhile (deploy_pending) is not overwritten.
    verdict: dict[str, Any] = {
        "scan_status": "passed" if event.passed else "failed",
        "violations": event.violations,
        "manifest": event.manifest,
        "status": "NOT_DEPLOYED" if event.passed else "FAILED",
        "error": None if event.passed else "; ".join(errors[:5]) or "scan failed",
        "updated_at": now(),
    }
    if not await c.tables.plugins.update(plugin.id, verdict, archive_sha256=event.archive_sha256):
        log.info("scan verdict for %s ignored: its archive was replaced meanwhile", event.plugin_id)
        return
    # A batch deploy asked for during the scan: carried out now, or dropped with the scan's failure.
    deployed = {"batch_enabled": True, "deployment_type": BATCH_ONLY} if event.passed else {}
    await c.tables.plugins.update(
        plugin.id, {**deployed, "deploy_pending": None}, deploy_pending=BATCH_ONLY, archive_sha256=event.archive_sha256
    )


# ----------------------------------------------------------------------------- deployment


async def deploy_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str, deployment_type: str | None) -> Plugin:
    """The plugin as deployed; with ``deploy_pending`` set when the deploy waits for the running scan."""
    plugin = await get_plugin(c, who, ns, plugin_id)
    if deployment_type not in (None, BATCH_ONLY):
        raise Invalid(f"deployment_type {deployment_type!r} is not known", "use ?deployment_type=batch_only")
    if plugin.scan_status == "scanning":
        if deployment_type is None:
            raise Conflict(
                f"{plugin_id} is still being scanned",
                f"poll GET .../plugins/{plugin_id}/status until scan.status is passed, or deploy with "
                "?deployment_type=batch_only, which is carried out when the scan passes",
            )
        queued = {"deploy_pending": BATCH_ONLY, "status": "PENDING", "updated_at": now()}
        # Only while the scan still runs (the verdict may land between the read and this write).
        if await c.tables.plugins.update(plugin.id, queued, scan_status="scanning"):
            return plugin.model_copy(update=queued)
        plugin = await get_plugin(c, who, ns, plugin_id)
    if plugin.scan_status != "passed":
        raise Conflict(
            f"{plugin_id} failed its scan and cannot be deployed",
            "fix the violations and upload a new archive: " + "; ".join(str(v) for v in plugin.violations[:3]),
        )
    if deployment_type is None:
        if not (plugin.manifest and plugin.manifest.has_realtime):
            raise DomainError(
                f"{plugin_id} has no realtime.py, so it has no real-time endpoint to deploy",
                "add ?deployment_type=batch_only to the deploy URL",
            )
        raise NotSupported(
            "real-time deployments are not available on this installation yet",
            "deploy with ?deployment_type=batch_only; queries are embedded through the batch steps",
        )
    deployed = {
        "status": "NOT_DEPLOYED",
        "deployment_type": BATCH_ONLY,
        "batch_enabled": True,
        "deploy_pending": None,
        "updated_at": now(),
    }
    # A passed version only changes by being deleted (and maybe uploaded again).
    if not await c.tables.plugins.update(
        plugin.id, deployed, archive_sha256=plugin.archive_sha256, scan_status="passed"
    ):
        raise _missing(ns, plugin_id)
    return plugin.model_copy(update=deployed)


async def undeploy_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> Plugin:
    """Stop batch work with the plugin; a deploy still waiting for the scan is dropped too."""
    while True:  # retried only when the scan's verdict landed between the read and the write
        plugin = await get_plugin(c, who, ns, plugin_id)
        status = {"passed": "NOT_DEPLOYED", "scanning": "QUEUED"}.get(plugin.scan_status, plugin.status)
        changes = {
            "batch_enabled": False,
            "deployment_type": None,
            "deploy_pending": None,
            "status": status,
            "updated_at": now(),
        }
        if await c.tables.plugins.update(
            plugin.id, changes, scan_status=plugin.scan_status, archive_sha256=plugin.archive_sha256
        ):
            return plugin.model_copy(update=changes)


async def delete_plugin(c: Ctx, who: Principal, ns: str, plugin_id: str) -> None:
    plugin = await get_plugin(c, who, ns, plugin_id)
    users = [
        collection.id
        for collection in await c.tables.collections.find(namespace_id=plugin.namespace_id)
        if any(fe.get("plugin_id") == plugin_id for fe in collection.feature_extractors)
    ]
    if users:
        raise Conflict(f"{plugin_id} is used by collections {users}", "delete those collections first")
    await c.tables.plugins.delete(plugin.id)


async def set_enabled(
    c: Ctx, who: Principal, ns: str, plugin_id: str, enabled: bool, params: dict[str, Any] | None = None
) -> Plugin:
    """Enable (with the organization's ``params``, when given) or disable the plugin."""
    plugin = await get_plugin(c, who, ns, plugin_id)
    changes: dict[str, Any] = {"enabled": enabled, "updated_at": now()}
    if params is not None:
        if json_size(params) > MAX_STORED_JSON:
            raise Invalid(f"params are over {MAX_STORED_JSON} bytes as JSON", "pass large inputs as blobs")
        changes["params"] = params
    if not await c.tables.plugins.update(plugin.id, changes):
        raise _missing(ns, plugin_id)
    return plugin.model_copy(update=changes)
