"""Plugins: presigned upload, confirm (→ scan), status, deploy, undeploy, delete, org enable/disable."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from beanie import UpdateResponse
from beanie.operators import Set
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pymongo.results import UpdateResult

from featurebus.common import ids
from featurebus.common.events import PluginUploaded
from featurebus.common.objectstore import sha256_hex
from featurebus.registry.auth import Principal, principal, resolve_namespace
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import CollectionDoc, PluginDoc, PluginUpload, now
from featurebus.registry.errors import ApiError
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.paging import Page, fetch, page

router = APIRouter(prefix="/v1/namespaces/{ns}/plugins")


def plugin_view(p: PluginDoc) -> dict[str, Any]:
    return {
        "plugin_id": p.plugin_id,
        "name": p.name,
        "feature_extractor_name": p.name,
        "version": p.version,
        "description": p.description,
        "namespace_id": p.namespace_id,
        "status": p.status,
        "deployment_type": p.deployment_type,
        "batch_enabled": p.batch_enabled,
        "enabled": p.enabled,
        "scan": {
            "status": p.scan_status,
            "passed": p.scan_status == "passed",
            "violations": [v.model_dump() for v in p.violations],
        },
        "validation_errors": [str(v) for v in p.violations if v.severity == "ERROR"],
        "manifest": p.manifest.model_dump() if p.manifest else None,
        "features": [f.model_dump() for f in p.manifest.features] if p.manifest else [],
        "archive_sha256": p.archive_sha256,
        "size_bytes": p.size_bytes,
        "params": p.params,
        "error": p.error,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


async def get_plugin(who: Principal, ns: str, plugin_id: str) -> PluginDoc:
    namespace = await resolve_namespace(who, ns)
    plugin = await PluginDoc.get(f"{namespace.id}/{plugin_id}")
    if plugin is None:
        raise ApiError(
            404,
            f"plugin {plugin_id!r} not found in namespace {ns!r}",
            "plugin ids are <name>_<X>_<Y>_<Z>, e.g. text_embed_1_0_0",
        )
    return plugin


class CreateUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        max_length=64,
        description="lowercase letters, digits and underscores, starting with a letter",
    )
    version: str = Field(max_length=64)
    description: str = Field(default="", max_length=1000)
    file_size_bytes: int | None = Field(default=None, ge=0)


@router.post("/uploads", status_code=201)
async def create_upload(
    ns: str, body: CreateUpload, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    try:
        version = ids.normalize_version(body.version)
    except ValueError as exc:
        raise ApiError(422, f"version: {exc}") from None
    if body.file_size_bytes and body.file_size_bytes > c.settings.max_archive_bytes:
        raise ApiError(
            413,
            f"file_size_bytes {body.file_size_bytes} exceeds the 500 MB archive limit",
            "don't bundle model weights; load them at init time",
        )
    upload_id = ids.new_id("upl")
    key = f"uploads/{upload_id}.zip"
    ttl = timedelta(seconds=c.settings.presigned_url_ttl_s)
    upload = PluginUpload(
        id=upload_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        plugin_id=ids.plugin_id(body.name, version),
        name=body.name,
        version=version,
        description=body.description,
        key=key,
        expires_at=now() + ttl,
    )
    await upload.insert()
    return {
        "upload_id": upload_id,
        "presigned_url": await c.store.presigned_put(key, ttl),
        "expires_at": upload.expires_at,
        "name": body.name,
        "version": version,
        "plugin_id": upload.plugin_id,
        "method": "PUT",
    }


@router.post("/uploads/{upload_id}/confirm")
async def confirm_upload(
    ns: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    upload = await PluginUpload.get(upload_id)
    if upload is None or upload.namespace_id != namespace.id:
        raise ApiError(404, f"upload {upload_id!r} not found", "start with POST .../plugins/uploads")
    size = await c.store.size(upload.key)
    if size is None:
        raise ApiError(
            409, "no archive was uploaded for this upload_id", "PUT the zip to presigned_url first, then confirm"
        )
    if size > c.settings.max_archive_bytes:
        raise ApiError(
            413, f"archive is {size} bytes; the limit is 500 MB", "don't bundle model weights; load them at init time"
        )
    data = await c.store.get_bytes(c.store.uri(upload.key))
    digest = sha256_hex(data)
    doc_id = f"{namespace.id}/{upload.plugin_id}"
    existing = await PluginDoc.get(doc_id)
    if existing is not None and existing.archive_sha256 == digest:
        return {**plugin_view(existing), "upload_id": upload_id}
    if existing is not None and existing.scan_status == "passed":
        raise ApiError(
            409,
            f"{upload.name} version {upload.version} exists with another archive",
            "bump the version: published versions are immutable",
        )
    uri = await c.store.put_bytes(f"plugins/{namespace.id}/{upload.plugin_id}/{digest}.zip", data, "application/zip")
    plugin = PluginDoc(
        id=doc_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        plugin_id=upload.plugin_id,
        name=upload.name,
        version=upload.version,
        description=upload.description,
        archive_uri=uri,
        archive_sha256=digest,
        size_bytes=size,
        status="QUEUED",
        scan_status="scanning",
    )
    await plugin.save()
    await c.bus.publish(
        PluginUploaded(
            org_id=who.org_id,
            namespace_id=namespace.id,
            plugin_id=upload.plugin_id,
            upload_id=upload_id,
            name=upload.name,
            version=upload.version,
            archive_uri=uri,
            archive_sha256=digest,
            size_bytes=size,
        ),
        key=upload.plugin_id,
    )
    return {**plugin_view(plugin), "upload_id": upload_id}


@router.get("")
async def list_plugins(ns: str, who: Principal = Depends(principal), p: Page = Depends(page)) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    docs, total = await fetch(lambda: PluginDoc.find(PluginDoc.namespace_id == namespace.id), p)
    return p.view([plugin_view(d) for d in docs], total)


@router.get("/{plugin_id}")
async def plugin_detail(ns: str, plugin_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return plugin_view(await get_plugin(who, ns, plugin_id))


@router.get("/{plugin_id}/status")
async def plugin_status(ns: str, plugin_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    view = plugin_view(await get_plugin(who, ns, plugin_id))
    return {
        k: view[k]
        for k in ("plugin_id", "status", "deployment_type", "batch_enabled", "scan", "validation_errors", "error")
    }


@router.post("/{plugin_id}/deploy", response_model=None)
async def deploy(
    ns: str, plugin_id: str, deployment_type: str | None = None, who: Principal = Depends(principal)
) -> dict[str, Any] | JSONResponse:
    plugin = await get_plugin(who, ns, plugin_id)
    if deployment_type not in (None, "batch_only"):
        raise ApiError(422, f"deployment_type {deployment_type!r} is not known", "use ?deployment_type=batch_only")
    if plugin.scan_status == "scanning":
        if deployment_type is None:
            raise ApiError(
                409,
                f"{plugin_id} is still being scanned",
                f"poll GET .../plugins/{plugin_id}/status until scan.status is passed, or deploy with "
                "?deployment_type=batch_only, which is carried out when the scan passes",
            )
        # Only while the scan still runs (the verdict may land between the read and this write).
        queued = await PluginDoc.find_one(PluginDoc.id == plugin.id, PluginDoc.scan_status == "scanning").update(
            Set({PluginDoc.deploy_pending: "batch_only", PluginDoc.status: "PENDING", PluginDoc.updated_at: now()}),  # type: ignore[no-untyped-call]
            response_type=UpdateResponse.UPDATE_RESULT,
        )
        if isinstance(queued, UpdateResult) and queued.matched_count:
            return JSONResponse(
                {
                    "plugin_id": plugin_id,
                    "status": "PENDING",
                    "deployment_type": "batch_only",
                    "batch_enabled": False,
                    "message": "the scan is still running: the plugin is deployed for batch processing when it "
                    "passes, or goes FAILED with the scan's violations",
                },
                status_code=202,
            )
        plugin = await get_plugin(who, ns, plugin_id)
    if plugin.scan_status != "passed":
        raise ApiError(
            409,
            f"{plugin_id} failed its scan and cannot be deployed",
            "fix the violations and upload a new archive: " + "; ".join(str(v) for v in plugin.violations[:3]),
        )
    if deployment_type is None:
        if not (plugin.manifest and plugin.manifest.has_realtime):
            raise ApiError(
                400,
                f"{plugin_id} has no realtime.py, so it has no real-time endpoint to deploy",
                "add ?deployment_type=batch_only to the deploy URL",
            )
        raise ApiError(
            501,
            "real-time deployments are not available on this installation yet",
            "deploy with ?deployment_type=batch_only; queries are embedded through the batch steps",
        )
    plugin.status, plugin.deployment_type, plugin.batch_enabled, plugin.updated_at = (
        "NOT_DEPLOYED",
        "batch_only",
        True,
        now(),
    )
    await plugin.save()
    return {
        "plugin_id": plugin_id,
        "status": plugin.status,
        "deployment_type": plugin.deployment_type,
        "batch_enabled": True,
        "message": "deployed for batch processing (no real-time endpoint)",
    }


@router.post("/{plugin_id}/undeploy")
async def undeploy(ns: str, plugin_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    plugin = await get_plugin(who, ns, plugin_id)
    plugin.batch_enabled, plugin.deployment_type, plugin.updated_at = False, None, now()
    plugin.status = "NOT_DEPLOYED" if plugin.scan_status == "passed" else plugin.status
    await plugin.save()
    return {"plugin_id": plugin_id, "status": plugin.status, "batch_enabled": False}


@router.delete("/{plugin_id}")
async def delete_plugin(ns: str, plugin_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    plugin = await get_plugin(who, ns, plugin_id)
    users = [
        c.id
        for c in await CollectionDoc.find(CollectionDoc.namespace_id == plugin.namespace_id).to_list()
        if any(fe.get("plugin_id") == plugin_id for fe in c.feature_extractors)
    ]
    if users:
        raise ApiError(409, f"{plugin_id} is used by collections {users}", "delete those collections first")
    await plugin.delete()
    return {"deleted": True, "plugin_id": plugin_id}


class EnableBody(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)


@router.post("/org/{plugin_id}/enable")
async def enable(ns: str, plugin_id: str, body: EnableBody, who: Principal = Depends(principal)) -> dict[str, Any]:
    plugin = await get_plugin(who, ns, plugin_id)
    if json_size(body.params) > MAX_STORED_JSON:
        raise ApiError(422, f"params are over {MAX_STORED_JSON} bytes as JSON", "pass large inputs as blobs")
    plugin.enabled, plugin.params, plugin.updated_at = True, body.params, now()
    await plugin.save()
    return {"plugin_id": plugin_id, "enabled": True, "params": plugin.params}


@router.post("/org/{plugin_id}/disable")
async def disable(ns: str, plugin_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    plugin = await get_plugin(who, ns, plugin_id)
    plugin.enabled, plugin.updated_at = False, now()
    await plugin.save()
    return {"plugin_id": plugin_id, "enabled": False}
