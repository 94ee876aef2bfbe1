"""``/v1/models`` (cluster models: any key reads, org-admin keys write) and ``/v1/namespaces/{ns}/models``
(a namespace's own models): create → PUT each listed upload → confirm; list, get, delete."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from featurebus.common.model_store import ModelFile
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.model_checks import FileSpec
from featurebus.registry.paging import Page, page
from featurebus.registry.records import Model
from featurebus.registry.usecases import models
from featurebus.registry.usecases.models import Upload

router = APIRouter()
cluster = APIRouter(prefix="/v1/models")
namespaced = APIRouter(prefix="/v1/namespaces/{ns}/models")


class FileEntry(BaseModel):
    """Only the types are checked here; the use case names each bad value and its fix."""

    model_config = ConfigDict(extra="ignore")
    path: str
    size_bytes: int
    sha256: str


class CreateModel(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(max_length=256)
    revision: str | None = Field(default=None, min_length=1, max_length=256)
    source: str | None = Field(default=None, max_length=2048)
    files: list[FileEntry]

    def specs(self) -> list[FileSpec]:
        return [FileSpec(f.path, f.size_bytes, f.sha256) for f in self.files]


class CreateClusterModel(CreateModel):
    name: str = Field(max_length=256, validation_alias=AliasChoices("name", "repo_id"))


class ModelView(BaseModel):
    model_id: str
    name: str
    revision: str
    namespace_id: str | None
    status: str
    files: list[ModelFile]
    total_bytes: int
    source: str | None
    error: str | None = None  # why a fetch from the model hub failed
    created_at: datetime
    ready_at: datetime | None

    @classmethod
    def of(cls, m: Model) -> ModelView:
        return cls(
            model_id=m.id,
            name=m.name,
            revision=m.revision,
            namespace_id=m.namespace_id,
            status=m.status,
            files=m.files,
            total_bytes=sum(f.size_bytes for f in m.files),
            source=m.source,
            error=m.error,
            created_at=m.created_at,
            ready_at=m.ready_at,
        )


class UploadView(BaseModel):
    path: str
    presigned_url: str
    method: str = "PUT"
    expires_at: datetime


class CreatedModelView(ModelView):
    uploads: list[UploadView] = Field(description="PUT each file's bytes to its URL, then confirm")

    @classmethod
    def made(cls, m: Model, uploads: list[Upload]) -> CreatedModelView:
        return cls(
            **ModelView.of(m).model_dump(),
            uploads=[UploadView(path=u.path, presigned_url=u.presigned_url, expires_at=u.expires_at) for u in uploads],
        )


class ModelListing(BaseModel):
    models: list[ModelView]
    total: int
    offset: int
    limit: int


class Deleted(BaseModel):
    deleted: bool = True
    model_id: str
    name: str


async def _listing(c: Ctx, who: Principal, ns: str | None, p: Page) -> ModelListing:
    found, total = await models.list_models(c, who, ns, p.offset, p.limit)
    return ModelListing(models=[ModelView.of(m) for m in found], total=total, offset=p.offset, limit=p.limit)


async def _deleted(c: Ctx, who: Principal, ns: str | None, model_id: str) -> Deleted:
    gone = await models.delete_model(c, who, ns, model_id)
    return Deleted(model_id=gone.id, name=gone.name)


@cluster.post("", status_code=201)
async def create_cluster_model(
    body: CreateClusterModel, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> CreatedModelView:
    """Import a Hugging Face repo (org-admin key): PUT each listed upload, then confirm."""
    made, uploads = await models.create_model(c, who, None, body.name, body.specs(), body.revision, body.source)
    return CreatedModelView.made(made, uploads)


@cluster.post("/{model_id}/confirm")
async def confirm_cluster_model(model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> ModelView:
    return ModelView.of(await models.confirm_model(c, who, None, model_id))


@cluster.get("")
async def list_cluster_models(
    who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> ModelListing:
    return await _listing(c, who, None, p)


@cluster.get("/{model_id}")
async def get_cluster_model(model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> ModelView:
    return ModelView.of(await models.get_model(c, who, None, model_id))


@cluster.delete("/{model_id}")
async def delete_cluster_model(model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> Deleted:
    return await _deleted(c, who, None, model_id)


@namespaced.post("", status_code=201)
async def create_namespace_model(
    ns: str, body: CreateModel, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> CreatedModelView:
    """Upload a model only this namespace's plugins see: PUT each listed upload, then confirm."""
    made, uploads = await models.create_model(c, who, ns, body.name, body.specs(), body.revision, body.source)
    return CreatedModelView.made(made, uploads)


@namespaced.post("/{model_id}/confirm")
async def confirm_namespace_model(
    ns: str, model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> ModelView:
    return ModelView.of(await models.confirm_model(c, who, ns, model_id))


@namespaced.get("")
async def list_namespace_models(
    ns: str, who: Principal = Depends(principal), p: Page = Depends(page), c: Ctx = Depends(ctx)
) -> ModelListing:
    return await _listing(c, who, ns, p)


@namespaced.get("/{model_id}")
async def get_namespace_model(
    ns: str, model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> ModelView:
    return ModelView.of(await models.get_model(c, who, ns, model_id))


@namespaced.delete("/{model_id}")
async def delete_namespace_model(
    ns: str, model_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Deleted:
    return await _deleted(c, who, ns, model_id)


router.include_router(cluster)
router.include_router(namespaced)
