"""``/v1/namespaces/{ns}/plugins``: presigned upload, confirm (→ scan), status, deploy, undeploy,
delete, org enable/disable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from featurebus.common.events import FeatureSpec, PluginManifest, Violation
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Plugin, PluginUpload
from featurebus.registry.usecases import plugins

router = APIRouter(prefix="/v1/namespaces/{ns}/plugins")


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


class UploadView(BaseModel):
    upload_id: str
    presigned_url: str
    expires_at: datetime
    name: str
    version: str
    plugin_id: str
    method: str = "PUT"

    @classmethod
    def of(cls, u: PluginUpload, presigned_url: str) -> UploadView:
        return cls(
            upload_id=u.id,
            presigned_url=presigned_url,
            expires_at=u.expires_at,
            name=u.name,
            version=u.version,
            plugin_id=u.plugin_id,
        )


class ScanView(BaseModel):
    status: str
    passed: bool
    violations: list[Violation]


class PluginStatusView(BaseModel):
    plugin_id: str
    status: str
    deployment_type: str | None
    batch_enabled: bool
    scan: ScanView
    validation_errors: list[str]
    error: str | None

    @classmethod
    def of(cls, p: Plugin) -> PluginStatusView:
        return cls(**_status_fields(p))


def _status_fields(p: Plugin) -> dict[str, Any]:
    return {
        "plugin_id": p.plugin_id,
        "status": p.status,
        "deployment_type": p.deployment_type,
        "batch_enabled": p.batch_enabled,
        "scan": ScanView(status=p.scan_status, passed=p.scan_status == "passed", violations=p.violations),
        "validation_errors": [str(v) for v in p.violations if v.severity == "ERROR"],
        "error": p.error,
    }


class PluginView(PluginStatusView):
    name: str
    feature_extractor_name: str
    version: str
    description: str
    namespace_id: str
    enabled: bool
    manifest: PluginManifest | None
    features: list[FeatureSpec]
    archive_sha256: str
    size_bytes: int
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, p: Plugin) -> PluginView:
        return cls(
            **_status_fields(p),
            name=p.name,
            feature_extractor_name=p.name,
            version=p.version,
            description=p.description,
            namespace_id=p.namespace_id,
            enabled=p.enabled,
            manifest=p.manifest,
            features=p.manifest.features if p.manifest else [],
            archive_sha256=p.archive_sha256,
            size_bytes=p.size_bytes,
            params=p.params,
            created_at=p.created_at,
            updated_at=p.updated_at,
        )


class ConfirmedView(PluginView):
    upload_id: str


class DeployView(BaseModel):
    plugin_id: str
    status: str
    deployment_type: str | None
    batch_enabled: bool
    message: str

    @classmethod
    def of(cls, p: Plugin) -> DeployView:
        if p.deploy_pending:
            return cls(
                plugin_id=p.plugin_id,
                status="PENDING",
                deployment_type=p.deploy_pending,
                batch_enabled=False,
                message="the scan is still running: the plugin is deployed for batch processing when it "
                "passes, or goes FAILED with the scan's violations",
            )
        return cls(
            plugin_id=p.plugin_id,
            status=p.status,
            deployment_type=p.deployment_type,
            batch_enabled=p.batch_enabled,
            message="deployed for batch processing (no real-time endpoint)",
        )


class UndeployView(BaseModel):
    plugin_id: str
    status: str
    batch_enabled: bool


class Deleted(BaseModel):
    deleted: bool = True
    plugin_id: str


class EnableBody(BaseModel):
    params: dict[str, Any] = Field(default_factory=dict)


class EnabledView(BaseModel):
    plugin_id: str
    enabled: bool
    params: dict[str, Any]


class DisabledView(BaseModel):
    plugin_id: str
    enabled: bool


@router.post("/uploads", status_code=201)
async def create_upload(
    ns: str, body: CreateUpload, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> UploadView:
    upload, url = await plugins.create_plugin_upload(c, who, ns, **body.model_dump())
    return UploadView.of(upload, url)


@router.post("/uploads/{upload_id}/confirm")
async def confirm_upload(
    ns: str, upload_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> ConfirmedView:
    plugin = await plugins.confirm_plugin_upload(c, who, ns, upload_id)
    return ConfirmedView(**PluginView.of(plugin).model_dump(), upload_id=upload_id)


@router.get("")
async def list_plugins(
    ns: str, who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> Listing[PluginView]:
    found, total = await plugins.list_plugins(c, who, ns, p.offset, p.limit)
    return Listing.of([PluginView.of(plugin) for plugin in found], total, p)


@router.get("/{plugin_id}")
async def plugin_detail(
    ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> PluginView:
    return PluginView.of(await plugins.get_plugin(c, who, ns, plugin_id))


@router.get("/{plugin_id}/status")
async def plugin_status(
    ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> PluginStatusView:
    return PluginStatusView.of(await plugins.get_plugin(c, who, ns, plugin_id))


@router.post("/{plugin_id}/deploy", responses={202: {"model": DeployView, "description": "waits for the scan"}})
async def deploy(
    ns: str,
    plugin_id: str,
    response: Response,
    deployment_type: str | None = None,
    who: Principal = Depends(principal),
    c: Ctx = Depends(ctx),
) -> DeployView:
    """200 when deployed; 202 when the deploy is carried out once the running scan passes."""
    plugin = await plugins.deploy_plugin(c, who, ns, plugin_id, deployment_type)
    if plugin.deploy_pending:
        response.status_code = 202
    return DeployView.of(plugin)


@router.post("/{plugin_id}/undeploy")
async def undeploy(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> UndeployView:
    plugin = await plugins.undeploy_plugin(c, who, ns, plugin_id)
    return UndeployView(plugin_id=plugin.plugin_id, status=plugin.status, batch_enabled=plugin.batch_enabled)


@router.delete("/{plugin_id}")
async def delete_plugin(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> Deleted:
    await plugins.delete_plugin(c, who, ns, plugin_id)
    return Deleted(plugin_id=plugin_id)


@router.post("/org/{plugin_id}/enable")
async def enable(
    ns: str, plugin_id: str, body: EnableBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> EnabledView:
    plugin = await plugins.set_enabled(c, who, ns, plugin_id, True, body.params)
    return EnabledView(plugin_id=plugin.plugin_id, enabled=plugin.enabled, params=plugin.params)


@router.post("/org/{plugin_id}/disable")
async def disable(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> DisabledView:
    plugin = await plugins.set_enabled(c, who, ns, plugin_id, False)
    return DisabledView(plugin_id=plugin.plugin_id, enabled=plugin.enabled)
