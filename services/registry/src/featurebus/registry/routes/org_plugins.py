"""``/v1/plugins``: the organization's plugins — presigned upload, confirm (→ scan), list, detail,
delete. Namespaces enable them with ``POST /v1/namespaces/{ns}/plugins/org/{plugin_id}/enable``
(``routes/plugins.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from featurebus.common.events import PluginManifest
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Page, page
from featurebus.registry.records import PluginUpload
from featurebus.registry.routes.plugins import CreateUpload, ScanView, named_feature_uri, validation_status
from featurebus.registry.usecases import org_plugins
from featurebus.registry.usecases.org_plugins import OrgPlugin

router = APIRouter(prefix="/v1/plugins")


class OrgUploadView(BaseModel):
    """Mixpeek's PluginPresignedURLResponse."""

    upload_id: str
    presigned_url: str
    s3_key: str
    expires_at: datetime
    organization_id: str
    name: str
    version: str
    plugin_id: str
    method: str = "PUT"

    @classmethod
    def of(cls, u: PluginUpload, presigned_url: str) -> OrgUploadView:
        return cls(
            upload_id=u.id,
            presigned_url=presigned_url,
            s3_key=u.key,
            expires_at=u.expires_at,
            organization_id=u.org_id,
            name=u.name,
            version=u.version,
            plugin_id=u.plugin_id,
        )


def _document(o: OrgPlugin) -> dict[str, Any]:
    p = o.plugin
    return {
        "plugin_id": p.plugin_id,
        "organization_id": p.org_id,
        "name": p.name,
        "version": p.version,
        "description": p.description,
        "s3_archive_url": p.archive_uri,
        "code_hash": p.archive_sha256,
        "size_bytes": p.size_bytes,
        "validation_status": validation_status(p),
        "validation_errors": [str(v) for v in p.violations if v.severity == "ERROR"],
        "security_scan_passed": p.scan_status == "passed",
        "scan": ScanView(status=p.scan_status, passed=p.scan_status == "passed", violations=p.violations),
        "deployed": o.deployed,
        "feature_uri": named_feature_uri(p),
        "manifest": p.manifest,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


class OrgPluginDocument(BaseModel):
    """Mixpeek's PluginDocument (organization scope), plus the scan's violations."""

    plugin_id: str
    organization_id: str
    name: str
    version: str
    description: str
    s3_archive_url: str
    code_hash: str  # the archive's sha256
    size_bytes: int
    validation_status: str  # pending (being scanned) | passed | failed
    validation_errors: list[str]
    security_scan_passed: bool
    scan: ScanView
    deployed: bool  # enabled and deployed in a namespace the key may use
    deployment_info: dict[str, Any] | None = None
    feature_uri: str
    manifest: PluginManifest | None
    created_at: datetime
    updated_at: datetime
    deployed_at: datetime | None = None
    resolved_inference_name: str | None = None

    @classmethod
    def of(cls, o: OrgPlugin) -> OrgPluginDocument:
        return cls(**_document(o))


class OrgPluginDetail(BaseModel):
    """Mixpeek's PluginDetailResponse."""

    success: bool = True
    plugin: OrgPluginDocument


class OrgConfirmedView(OrgPluginDocument):
    """Mixpeek's ConfirmPluginUploadResponse, with the plugin's document."""

    success: bool
    upload_id: str
    deployment_status: str  # not_deployed (namespaces deploy it when they enable it) | failed
    message: str

    @classmethod
    def confirmed(cls, o: OrgPlugin, upload_id: str) -> OrgConfirmedView:
        p = o.plugin
        message = {
            "scanning": f"the archive is being scanned; poll GET /v1/plugins/{p.plugin_id} until validation_status "
            "is passed",
            "passed": f"scanned and ready: enable it in a namespace with POST /v1/namespaces/{{ns}}/plugins/org/"
            f"{p.plugin_id}/enable",
        }.get(p.scan_status, p.error or "the scan failed")
        return cls(
            **_document(o),
            success=p.scan_status != "failed",
            upload_id=upload_id,
            deployment_status="failed" if p.scan_status == "failed" else "not_deployed",
            message=message,
        )


class OrgPluginItem(BaseModel):
    """Mixpeek's PluginListItem."""

    plugin_id: str
    name: str
    version: str
    description: str
    deployed: bool
    validation_status: str
    feature_uri: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, o: OrgPlugin) -> OrgPluginItem:
        return cls.model_validate(_document(o))


class OrgPluginListing(BaseModel):
    """Mixpeek's PluginListResponse, with the page it is."""

    success: bool = True
    plugins: list[OrgPluginItem]
    total: int
    organization_id: str
    offset: int
    limit: int


class OrgPluginDeleted(BaseModel):
    """Mixpeek's PluginDeleteResponse."""

    success: bool = True
    plugin_id: str
    message: str


@router.post("/uploads", status_code=201)
async def create_upload(
    body: CreateUpload, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> OrgUploadView:
    """Org-admin keys only; PUT the zip to ``presigned_url``, then confirm."""
    upload, url = await org_plugins.create_org_plugin_upload(c, who, **body.model_dump())
    return OrgUploadView.of(upload, url)


@router.post("/uploads/{upload_id}/confirm")
async def confirm_upload(
    upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> OrgConfirmedView:
    """The archive is scanned as a namespace plugin's is; ``validation_status`` pending until then."""
    return OrgConfirmedView.confirmed(await org_plugins.confirm_org_plugin_upload(c, who, upload_id), upload_id)


@router.get("")
async def list_plugins(
    who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> OrgPluginListing:
    found, total = await org_plugins.list_org_plugins(c, who, p.offset, p.limit)
    items = [OrgPluginItem.of(o) for o in found]
    return OrgPluginListing(plugins=items, total=total, organization_id=who.org_id, offset=p.offset, limit=p.limit)


@router.get("/{plugin_id}")
async def plugin_detail(plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> OrgPluginDetail:
    return OrgPluginDetail(plugin=OrgPluginDocument.of(await org_plugins.get_org_plugin(c, who, plugin_id)))


@router.delete("/{plugin_id}")
async def delete_plugin(plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> OrgPluginDeleted:
    """Org-admin keys only; 409 while a namespace has it enabled or a collection uses it."""
    plugin = await org_plugins.delete_org_plugin(c, who, plugin_id)
    return OrgPluginDeleted(plugin_id=plugin.plugin_id, message=f"plugin {plugin.name}@{plugin.version} deleted")
