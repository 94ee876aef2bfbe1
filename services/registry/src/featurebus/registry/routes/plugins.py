"""``/v1/namespaces/{ns}/plugins``: presigned upload, confirm (→ scan), or the archive in the request
(multipart); status, deploy, undeploy, delete; the organization's plugins available here, and
enable/disable (``usecases/org_plugins.py``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Scope

from featurebus.common.events import FeatureSpec, PluginManifest, Violation
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Plugin, PluginUpload
from featurebus.registry.usecases import deployments, org_plugins, plugins
from featurebus.registry.usecases.org_plugins import Available, InNamespace

router = APIRouter(prefix="/v1/namespaces/{ns}/plugins")

# The one route whose body is not JSON: the archive, in a multipart form.
_FORM_UPLOAD = re.compile(r"^/v1/namespaces/[^/]+/plugins/?$")
FORM_OVERHEAD_BYTES = 1024 * 1024  # the form's other fields and boundaries, beside the archive


def is_form_upload(scope: Scope) -> bool:
    """Whether the request is ``POST /v1/namespaces/{ns}/plugins``: a form, whatever its label (BodyGuard streams it)."""
    return scope.get("method") == "POST" and bool(_FORM_UPLOAD.match(scope.get("path", "")))


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
    s3_key: str
    expires_at: datetime
    namespace_id: str
    name: str
    version: str
    plugin_id: str
    method: str = "PUT"

    @classmethod
    def of(cls, u: PluginUpload, presigned_url: str) -> UploadView:
        return cls(
            upload_id=u.id,
            presigned_url=presigned_url,
            s3_key=u.key,
            expires_at=u.expires_at,
            namespace_id=u.namespace_id,
            name=u.name,
            version=u.version,
            plugin_id=u.plugin_id,
        )


class ScanView(BaseModel):
    status: str
    passed: bool
    violations: list[Violation]


class PluginStatusView(BaseModel):
    """Mixpeek's PluginStatusResponse, plus the scan and the batch deployment."""

    plugin_id: str
    namespace_id: str
    name: str
    version: str
    status: str
    message: str
    deployment_type: str | None
    batch_enabled: bool
    deployed: bool
    realtime_enabled: bool
    route_prefix: str | None
    feature_uri: str | None
    queued_at: datetime | None
    deployed_at: datetime | None
    estimated_completion_seconds: int | None = None
    # The real-time deployment: replicas of the one serving (or starting), and why the last rollout failed.
    replicas_ready: int
    replicas_desired: int
    rollout_in_progress: bool
    rollout_error: str | None
    scan: ScanView
    validation_errors: list[str]
    error: str | None

    @classmethod
    def of(cls, p: Plugin) -> PluginStatusView:
        return cls(**_status_fields(p))


def feature_uri(p: Plugin) -> str | None:
    """How retrievers name the plugin's (first) feature: the manifest's, or mixpeek://name@version/feature."""
    if p.manifest is None:
        return None
    if p.manifest.feature_uri:
        return p.manifest.feature_uri
    features = p.manifest.features
    return f"mixpeek://{p.name}@{p.version}/{features[0].feature_name}" if features else None


def status_message(p: Plugin) -> str:
    if p.status == "FAILED":
        return p.error or "failed"
    if p.deploy_pending:
        return "the scan is running; the deploy asked for is carried out when it passes"
    if p.scan_status == "scanning":
        return "the archive is being scanned; poll this status until scan.status is passed"
    if p.rollout:
        then = "then it takes over from the deployment serving now" if p.serving else "then it serves"
        return (
            f"the real-time deployment is starting ({p.replicas_ready} of {p.replicas_desired or '?'} replicas); {then}"
        )
    if p.serving:
        kept = f" (the last rollout failed: {p.rollout_error})" if p.rollout_error else ""
        return f"deployed: real-time endpoint at {infer_path(p)} and batch processing{kept}"
    if p.batch_enabled:
        return "deployed for batch processing (no real-time endpoint)"
    return "scanned and ready: deploy it with POST .../deploy (real time) or ?deployment_type=batch_only"


def infer_path(p: Plugin) -> str:
    return f"/v1/namespaces/{p.namespace_id}/plugins/{p.plugin_id}/infer"


def _status_fields(p: Plugin) -> dict[str, Any]:
    return {
        "plugin_id": p.plugin_id,
        "namespace_id": p.namespace_id,
        "name": p.name,
        "version": p.version,
        "status": p.status,
        "message": status_message(p),
        "deployment_type": p.deployment_type,
        "batch_enabled": p.batch_enabled,
        "deployed": p.batch_enabled or p.serving is not None,
        "realtime_enabled": p.serving is not None,
        "route_prefix": infer_path(p) if p.serving else None,
        "feature_uri": feature_uri(p),
        "queued_at": p.created_at if p.status in ("QUEUED", "PENDING") else None,
        "deployed_at": p.deployed_at,
        "replicas_ready": p.replicas_ready,
        "replicas_desired": p.replicas_desired,
        "rollout_in_progress": p.rollout is not None,
        "rollout_error": p.rollout_error,
        "scan": ScanView(status=p.scan_status, passed=p.scan_status == "passed", violations=p.violations),
        "validation_errors": [str(v) for v in p.violations if v.severity == "ERROR"],
        "error": p.error,
    }


class PluginView(PluginStatusView):
    feature_extractor_name: str
    description: str
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
            feature_extractor_name=p.name,
            description=p.description,
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
    """The plugin, with Mixpeek's ConfirmPluginUploadResponse fields."""

    upload_id: str
    success: bool
    validation_status: str  # pending (being scanned) | passed | failed
    deployment_status: str
    s3_archive_url: str

    @classmethod
    def confirmed(cls, p: Plugin, upload_id: str) -> ConfirmedView:
        return cls(
            **PluginView.of(p).model_dump(),
            upload_id=upload_id,
            success=p.scan_status != "failed",
            validation_status={"scanning": "pending"}.get(p.scan_status, p.scan_status),
            deployment_status=p.status,
            s3_archive_url=p.archive_uri,
        )


class UploadedView(PluginView):
    """Mixpeek's PluginUploadResponse, with the plugin."""

    upload_id: str
    success: bool
    validation_status: str  # pending (being scanned) | passed | failed
    deployment_status: str  # not_deployed | pending (starting, or a deploy waits for the scan) | deployed | failed
    feature_uri: str  # mixpeek://name@version until the scan has read the manifest's features
    s3_archive_url: str

    @classmethod
    def uploaded(cls, p: Plugin, upload_id: str) -> UploadedView:
        fields = {**PluginView.of(p).model_dump(), "feature_uri": named_feature_uri(p)}
        deployment = {"DEPLOYED": "deployed", "FAILED": "failed", "PENDING": "pending", "IN_PROGRESS": "pending"}
        return cls(
            **fields,
            upload_id=upload_id,
            success=p.scan_status != "failed",
            validation_status=validation_status(p),
            deployment_status=deployment.get(p.status, "not_deployed"),
            s3_archive_url=p.archive_uri,
        )


class DeployView(BaseModel):
    plugin_id: str
    status: str
    deployment_type: str | None
    batch_enabled: bool
    message: str

    @classmethod
    def of(cls, p: Plugin) -> DeployView:
        if p.deploy_pending:
            what = "deployed for batch processing" if p.deploy_pending == "batch_only" else "deployed for real time"
            return cls(
                plugin_id=p.plugin_id,
                status="PENDING",
                deployment_type=p.deploy_pending,
                batch_enabled=False,
                message=f"the scan is still running: the plugin is {what} when it passes, or goes FAILED "
                "with the scan's violations",
            )
        return cls(
            plugin_id=p.plugin_id,
            status=p.status,
            deployment_type=p.deployment_type,
            batch_enabled=p.batch_enabled,
            message=status_message(p) + ("; follow it with GET .../status" if p.rollout else ""),
        )


class UndeployView(BaseModel):
    plugin_id: str
    status: str
    batch_enabled: bool


class Deleted(BaseModel):
    deleted: bool = True
    plugin_id: str


class EnableBody(BaseModel):
    """Mixpeek's EnableOrgPluginRequest; without ``params`` the stored ones stay."""

    params: dict[str, Any] | None = None
    deploy: bool = True  # an organization plugin: deploy it for batch processing in this namespace


def validation_status(p: Plugin) -> str:
    """Mixpeek's name of the scan's state: pending (being scanned), passed or failed."""
    return {"scanning": "pending"}.get(p.scan_status, p.scan_status)


def named_feature_uri(p: Plugin) -> str:
    """The plugin's feature_uri, or ``mixpeek://name@version`` before its scan has read the manifest."""
    return feature_uri(p) or f"mixpeek://{p.name}@{p.version}"


def deployment_status(p: Plugin) -> str | None:
    """Mixpeek's enable answer: deployed, pending (until the scan passes) or skipped (``deploy`` false)."""
    if p.organization_wide:
        if not p.batch_enabled:
            return "skipped"
        return "deployed" if p.scan_status == "passed" else "pending"
    return "deployed" if p.batch_enabled else "pending" if p.deploy_pending else None


class EnabledView(BaseModel):
    """Mixpeek's EnableOrgPluginResponse, plus the plugin's state in the namespace."""

    success: bool = True
    plugin_id: str
    namespace_id: str
    feature_uri: str
    message: str
    deployment_status: str | None
    scope: str  # organization | namespace
    enabled: bool
    params: dict[str, Any]

    @classmethod
    def of(cls, found: InNamespace) -> EnabledView:
        p, status = found.plugin, deployment_status(found.plugin)
        then = {
            "pending": "; it is deployed for batch processing once its scan passes",
            "skipped": '; not deployed for batch processing: enable it with {"deploy": true} to use it',
            None: f"; deploy it with POST .../plugins/{p.plugin_id}/deploy?deployment_type=batch_only",
        }.get(status, "")
        return cls(
            plugin_id=p.plugin_id,
            namespace_id=found.namespace.id,
            feature_uri=named_feature_uri(p),
            message=f"plugin {p.name}@{p.version} enabled for namespace {found.namespace.namespace_name}{then}",
            deployment_status=status,
            scope="organization" if p.organization_wide else "namespace",
            enabled=p.enabled,
            params=p.params,
        )


class DisabledView(BaseModel):
    """Mixpeek's DisableOrgPluginResponse: collections and batches refuse the plugin until it is enabled."""

    success: bool = True
    plugin_id: str
    namespace_id: str
    message: str
    scope: str
    enabled: bool

    @classmethod
    def of(cls, found: InNamespace) -> DisabledView:
        p = found.plugin
        return cls(
            plugin_id=p.plugin_id,
            namespace_id=found.namespace.id,
            message=f"plugin {p.name}@{p.version} disabled for namespace {found.namespace.namespace_name}",
            scope="organization" if p.organization_wide else "namespace",
            enabled=p.enabled,
        )


class AvailableItem(BaseModel):
    """Mixpeek's AvailableOrgPluginItem, plus its params and deployment here."""

    plugin_id: str
    name: str
    version: str
    description: str
    feature_uri: str
    validation_status: str
    enabled_in_namespace: bool
    params: dict[str, Any]
    deployment_status: str | None
    shadowed_by_namespace_plugin: bool  # the namespace has its own plugin of this id and uses that one
    created_at: datetime

    @classmethod
    def of(cls, a: Available) -> AvailableItem:
        p = a.plugin
        return cls(
            plugin_id=p.plugin_id,
            name=p.name,
            version=p.version,
            description=p.description,
            feature_uri=named_feature_uri(p),
            validation_status=validation_status(p),
            enabled_in_namespace=p.enabled and not a.shadowed,
            params=p.params,
            deployment_status=deployment_status(p) if p.enabled else None,
            shadowed_by_namespace_plugin=a.shadowed,
            created_at=p.created_at,
        )


class AvailableView(BaseModel):
    """Mixpeek's AvailableOrgPluginsResponse."""

    success: bool = True
    plugins: list[AvailableItem]
    total: int
    organization_id: str
    namespace_id: str


@router.post("", responses={413: {"description": "the archive is over the limit"}})
async def upload_plugin(
    ns: str,
    file: Annotated[UploadFile, File(description="the plugin archive: its folder as a .zip")],
    name: Annotated[str, Form(description="the plugin's name, e.g. my_plugin")],
    version: Annotated[str, Form(description="its version, e.g. 1.0.0")],
    description: Annotated[str, Form()] = "",
    who: Principal = Depends(principal),
    c: Ctx = Depends(ctx),
) -> UploadedView:
    """Upload, confirm and scan in one call (``curl -F file=@my_plugin.zip -F name=my_plugin -F version=1.0.0``);
    ``validation_status`` is pending until the scan is done, as after a confirm."""
    try:
        fields = CreateUpload(name=name, version=version, description=description)
    except ValidationError as exc:  # the same rules, and the same answer, as a JSON upload's
        raise RequestValidationError(exc.errors()) from None
    archive = await file.read()
    upload, plugin = await plugins.upload_plugin(c, who, ns, fields.name, fields.version, fields.description, archive)
    return UploadedView.uploaded(plugin, upload.id)


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
    return ConfirmedView.confirmed(await plugins.confirm_plugin_upload(c, who, ns, upload_id), upload_id)


@router.get("")
async def list_plugins(
    ns: str, who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> Listing[PluginView]:
    found, total = await plugins.list_plugins(c, who, ns, p.offset, p.limit)
    return Listing.of([PluginView.of(plugin) for plugin in found], total, p)


@router.get("/available")  # before /{plugin_id}, which would take "available" for a plugin id
async def available(ns: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> AvailableView:
    """The organization's plugins, each with whether it is enabled in this namespace and its params."""
    namespace, found = await org_plugins.available_plugins(c, who, ns)
    items = [AvailableItem.of(a) for a in found]
    return AvailableView(plugins=items, total=len(items), organization_id=namespace.org_id, namespace_id=namespace.id)


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
    """200 when deployed; 202 when it is carried out later: after the running scan, or a real-time rollout."""
    plugin = await deployments.deploy_plugin(c, who, ns, plugin_id, deployment_type)
    if plugin.deploy_pending or plugin.rollout:
        response.status_code = 202
    return DeployView.of(plugin)


@router.post("/{plugin_id}/undeploy")
async def undeploy(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> UndeployView:
    plugin = await deployments.undeploy_plugin(c, who, ns, plugin_id)
    return UndeployView(plugin_id=plugin.plugin_id, status=plugin.status, batch_enabled=plugin.batch_enabled)


@router.delete("/{plugin_id}")
async def delete_plugin(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> Deleted:
    await deployments.delete_plugin(c, who, ns, plugin_id)
    return Deleted(plugin_id=plugin_id)


@router.post("/org/{plugin_id}/enable")
async def enable(
    ns: str, plugin_id: str, body: EnableBody | None = None, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> EnabledView:
    """The organization plugin ``plugin_id`` (or the namespace's own plugin of that id) may be used here."""
    body = body or EnableBody()
    return EnabledView.of(await org_plugins.set_enabled(c, who, ns, plugin_id, True, body.params, body.deploy))


@router.post("/org/{plugin_id}/disable")
async def disable(ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> DisabledView:
    """Collections with the plugin and their batches are refused (409) until it is enabled again."""
    return DisabledView.of(await org_plugins.set_enabled(c, who, ns, plugin_id, False))
