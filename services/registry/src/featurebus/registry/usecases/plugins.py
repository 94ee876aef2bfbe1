"""Plugins: presigned upload, confirm (→ scan), scan verdicts, deploy, undeploy, delete.

A plugin version is one record per namespace (id ``<namespace_id>/<plugin_id>``), or per
organization (``<org_id>/<plugin_id>``, see ``usecases/org_plugins.py``), uploaded alike. Its
archive is scanned asynchronously (``plugin.uploaded`` → scanner → ``plugin.scanned``); writes
that may meet the verdict on the way are field-wise compare-and-sets, so neither overwrites the
other.
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
from featurebus.registry.errors import Conflict, Invalid, NotFound, TooLarge
from featurebus.registry.records import Plugin, PluginUpload, now
from featurebus.registry.tables import Duplicate

__all__ = [
    "apply_scan",
    "confirm_plugin_upload",
    "confirm_upload",
    "create_plugin_upload",
    "create_upload",
    "get_plugin",
    "list_plugins",
]

log = logging.getLogger("featurebus.registry")

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
    return await create_upload(c, who, namespace.id, name, version, description, file_size_bytes)


async def create_upload(
    c: Ctx,
    who: Principal,
    scope_id: str,
    name: str,
    version: str,
    description: str = "",
    file_size_bytes: int | None = None,
) -> tuple[PluginUpload, str]:
    """An upload into ``scope_id``: a namespace's id, or the org_id for an organization plugin."""
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
        namespace_id=scope_id,
        plugin_id=ids.plugin_id(name, version),
        name=name,
        version=version,
        description=description,
        key=f"uploads/{upload_id}.zip",
        expires_at=now() + ttl,
    )
    await c.tables.plugin_uploads.insert(upload)
    return upload, await c.store.presigned_put(upload.key, ttl)


async def upload_plugin(
    c: Ctx, who: Principal, ns: str, name: str, version: str, description: str, archive: bytes
) -> tuple[PluginUpload, Plugin]:
    """The archive sent in the request itself (Mixpeek's "Upload a custom plugin"): the presigned
    upload, its PUT and its confirm in one call. The archive is scanned as an uploaded one is; an
    empty file, and a .tar.gz (the form Mixpeek's schema names), are refused at once."""
    if not archive:
        raise Invalid("file: the archive is empty", "send the plugin's .zip as the file field: -F file=@my_plugin.zip")
    if archive.startswith(b"\x1f\x8b"):
        raise Invalid(
            "file: a gzip archive (.tar.gz); featurebus takes plugins as .zip archives",
            "zip the plugin's folder: cd my_plugin && zip -r ../my_plugin.zip .",
        )
    if len(archive) > c.settings.max_archive_bytes:
        raise _archive_too_large(len(archive))
    namespace = await resolve_namespace(c.tables, who, ns)
    upload, _ = await create_upload(c, who, namespace.id, name, version, description, len(archive))
    await c.store.put_bytes(upload.key, archive, "application/zip")  # as a PUT would: a confirm of it stays idempotent
    return upload, await _store_and_scan(c, who, upload, archive)  # the bytes in hand: not read back


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
    return await confirm_upload(c, who, namespace.id, upload_id)


async def confirm_upload(c: Ctx, who: Principal, scope_id: str, upload_id: str) -> Plugin:
    """:func:`confirm_plugin_upload` of an upload into ``scope_id`` (a namespace's id, or the org_id)."""
    upload = await c.tables.plugin_uploads.get(upload_id)
    if upload is None or upload.namespace_id != scope_id:
        raise NotFound(f"upload {upload_id!r} not found", "start with POST .../plugins/uploads")
    return await _store_and_scan(c, who, upload, await _uploaded_archive(c, upload))


async def _store_and_scan(c: Ctx, who: Principal, upload: PluginUpload, data: bytes) -> Plugin:
    """The archive ``data`` of ``upload`` stored as its plugin version, and its scan asked for."""
    scope_id, upload_id = upload.namespace_id, upload.id
    digest = sha256_hex(data)
    archive_key = f"plugins/{scope_id}/{upload.plugin_id}/{digest}.zip"
    plugin = Plugin(
        id=f"{scope_id}/{upload.plugin_id}",
        org_id=who.org_id,
        namespace_id=scope_id,
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
            namespace_id=scope_id,
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


async def apply_scan(c: Ctx, event: PluginScanned) -> Plugin | None:
    """Store the scanner's verdict, violations and manifest; the plugin as stored (None if stale).

    A deploy asked for during the scan is left for :func:`~featurebus.registry.usecases.deployments.carry_out_pending`,
    or dropped with a failed scan."""
    errors = [str(v) for v in event.violations if v.severity == "ERROR"]
    while True:  # retried only when a deploy was queued between the read and the write
        plugin = await c.tables.plugins.get(f"{event.namespace_id}/{event.plugin_id}")
        if plugin is None or plugin.archive_sha256 != event.archive_sha256:
            log.info("stale scan verdict for %s ignored", event.plugin_id)
            return None
        if plugin.scan_status != "scanning":  # redelivered: applied already (a deploy may be pending still)
            return plugin
        # Only the scan's fields: a deploy queued meanwhile (deploy_pending) is not overwritten,
        # and its status stays PENDING until it is carried out (never a NOT_DEPLOYED in between).
        passed_status = "PENDING" if plugin.deploy_pending else "NOT_DEPLOYED"
        verdict: dict[str, Any] = {
            "scan_status": "passed" if event.passed else "failed",
            "violations": event.violations,
            "manifest": event.manifest,
            "status": passed_status if event.passed else "FAILED",
            "error": None if event.passed else "; ".join(errors[:5]) or "scan failed",
            "updated_at": now(),
        }
        if not event.passed:
            verdict["deploy_pending"] = None
        if await c.tables.plugins.update(
            plugin.id,
            verdict,
            archive_sha256=event.archive_sha256,
            scan_status="scanning",
            deploy_pending=plugin.deploy_pending,
        ):
            break
    return await c.tables.plugins.get(plugin.id)
