"""Models of the cluster (``ns=None``) and of namespaces: create → PUT to presigned URLs → confirm → ready.

Creating lists the files; only those whose blob the scope does not store yet get a presigned URL
(blobs are content-addressed, so a file shared by two models is stored once). Confirming checks
each uploaded file on a copy that a second PUT to the still-valid URL cannot change, and only a
checked copy ever reaches the blob's key, so a stored blob is always the bytes of its sha256. The
manifest is written last, then a compare-and-set on ``status="pending"`` makes the model ready:
of two confirms at once one records it and the other returns what it recorded. A ready model
replaces the older ready model of its scope and name. A blob is deleted only when no other model
of the scope (pending or ready) lists it.

Cluster models are the whole installation's (one object-store scope, read by every plugin):
any key reads them, only org-admin keys write them. Namespace models are seen only through their
namespace (another namespace gets a 404, as for every resource).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from featurebus.common import ids
from featurebus.common.model_store import ModelManifest, blob_key, manifest_key, revision_of, staging_key
from featurebus.common.objectstore import ObjectMissing
from featurebus.registry.auth import Principal, require_admin, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import NotFound
from featurebus.registry.magic_numbers import HEAD_BYTES
from featurebus.registry.model_checks import FileSpec, Problem, checked_files, refusal, staged_problem
from featurebus.registry.records import Model, now
from featurebus.registry.tables import stored_time

__all__ = [
    "CLUSTER",
    "Scope",
    "Upload",
    "confirm_model",
    "create_model",
    "delete_model",
    "get_model",
    "list_models",
    "next_ready_at",
    "replace_older",
    "restore_manifest",
    "write_manifest",
]

log = logging.getLogger("featurebus.registry.models")

_ADMIN_HINT = "cluster models are imported and deleted with an org-admin key; any key may read them"
# How many files a confirm checks, or a create looks up, at once.
_PARALLEL = 8


@dataclass(frozen=True)
class Scope:
    """Where models live: the cluster (``namespace_id`` None) or one namespace; ``path`` is its REST prefix."""

    namespace_id: str | None
    path: str
    label: str


@dataclass(frozen=True)
class Upload:
    """Where to PUT one file's bytes."""

    path: str
    presigned_url: str
    expires_at: datetime


CLUSTER = Scope(None, "/v1/models", "the cluster")


async def _scope(c: Ctx, who: Principal, ns: str | None, writing: str | None = None) -> Scope:
    if ns is None:
        if writing is not None:
            require_admin(who, writing, _ADMIN_HINT)
        return CLUSTER
    namespace = await resolve_namespace(c.tables, who, ns)
    return Scope(namespace.id, f"/v1/namespaces/{ns}/models", f"namespace {namespace.namespace_name!r}")


async def _model(c: Ctx, scope: Scope, model_id: str) -> Model:
    found = await c.tables.models.find_one(id=model_id, namespace_id=scope.namespace_id)
    if found is None:
        raise NotFound(f"model {model_id!r} not found in {scope.label}", f"list its models with GET {scope.path}")
    return found


async def _stored_blobs(c: Ctx, scope: Scope, shas: set[str]) -> set[str]:
    gate = asyncio.Semaphore(_PARALLEL)

    async def stored(sha: str) -> bool:
        async with gate:
            return await c.store.size(blob_key(scope.namespace_id, sha)) is not None

    ordered = sorted(shas)
    found = await asyncio.gather(*(stored(sha) for sha in ordered))
    return {sha for sha, yes in zip(ordered, found, strict=True) if yes}


async def create_model(
    c: Ctx,
    who: Principal,
    ns: str | None,
    name: str,
    files: Sequence[FileSpec],
    revision: str | None = None,
    source: str | None = None,
) -> tuple[Model, list[Upload]]:
    """A pending model and a presigned URL for each file whose blob is not stored yet (one per content)."""
    scope = await _scope(c, who, ns, "importing a cluster model")
    checked = checked_files(name, files, cluster=scope.namespace_id is None, max_bytes=c.settings.max_model_bytes)
    seen = await _stored_blobs(c, scope, {f.sha256 for f in checked})
    uploads = []
    for i, f in enumerate(checked):
        if f.sha256 not in seen:  # the first file of each content not stored yet
            uploads.append(i)
            seen.add(f.sha256)
    ttl = timedelta(seconds=c.settings.presigned_url_ttl_s)
    model = Model(
        id=ids.new_id("mdl"),
        org_id=who.org_id,
        namespace_id=scope.namespace_id,
        name=name,
        revision=revision or revision_of(checked),
        source=source,
        files=checked,
        uploads=uploads,
        expires_at=stored_time(now() + ttl),
        created_at=stored_time(now()),
    )
    await c.tables.models.insert(model)
    urls = [
        Upload(checked[i].path, await c.store.presigned_put(staging_key(model.id, i), ttl), model.expires_at)
        for i in uploads
    ]
    return model, urls


async def list_models(c: Ctx, who: Principal, ns: str | None, offset: int, limit: int) -> tuple[list[Model], int]:
    scope = await _scope(c, who, ns)
    return await c.tables.models.page(offset, limit, namespace_id=scope.namespace_id)


async def get_model(c: Ctx, who: Principal, ns: str | None, model_id: str) -> Model:
    return await _model(c, await _scope(c, who, ns), model_id)


async def confirm_model(c: Ctx, who: Principal, ns: str | None, model_id: str) -> Model:
    """The model, ready (idempotent); Invalid naming each file whose bytes are missing or wrong,
    leaving the model pending so that the client can PUT them again and confirm again."""
    scope = await _scope(c, who, ns, "confirming a cluster model")
    model = await _model(c, scope, model_id)
    if model.status == "ready":
        return model
    problems = await _store_blobs(c, scope, model)
    if problems:
        if await c.tables.models.get(model.id) is None:  # its staged bytes went with it
            raise _deleted_meanwhile(scope, model_id)
        raise refusal(problems)
    await write_manifest(c, model)
    ready_at = await next_ready_at(c, scope, model.name)
    if not await c.tables.models.update(model.id, {"status": "ready", "ready_at": ready_at}, status="pending"):
        fresh = await c.tables.models.get(model.id)
        if fresh is not None and fresh.status == "ready":  # a concurrent confirm recorded it first
            return fresh
        await restore_manifest(c, scope, model.name)  # deleted while it was confirmed
        raise _deleted_meanwhile(scope, model_id)
    ready = model.model_copy(update={"status": "ready", "ready_at": ready_at})
    await replace_older(c, scope, ready)
    await _delete_staging(c, model.id)
    log.info("model %s (%s of %s) is ready: %d files", model.id, model.name, scope.label, len(model.files))
    return ready


def _deleted_meanwhile(scope: Scope, model_id: str) -> NotFound:
    return NotFound(f"model {model_id!r} was deleted while it was confirmed", f"create it again: POST {scope.path}")


async def delete_model(c: Ctx, who: Principal, ns: str | None, model_id: str) -> Model:
    """Manifest first (a reader then no longer finds the model), then the blobs no other model of the
    scope lists, then the record."""
    scope = await _scope(c, who, ns, "deleting a cluster model")
    model = await _model(c, scope, model_id)
    if model.status == "ready":  # a pending model's name may be a ready model's: that manifest stays
        await c.store.delete(manifest_key(model.namespace_id, model.name))
    await _delete_unshared_blobs(c, scope, model)
    await _delete_staging(c, model.id)
    await c.tables.models.delete(model.id)
    log.info("model %s (%s of %s) deleted", model.id, model.name, scope.label)
    return model


async def _store_blobs(c: Ctx, scope: Scope, model: Model) -> list[Problem]:
    """Store each content the scope lacks from its checked upload; the problems of those that fail."""
    firsts: dict[str, int] = {}
    for i, f in enumerate(model.files):
        firsts.setdefault(f.sha256, i)
    gate = asyncio.Semaphore(_PARALLEL)

    async def one(sha: str, first: int) -> Problem | None:
        async with gate:
            if await c.store.size(blob_key(scope.namespace_id, sha)) is not None:
                return None  # stored before this model, or by a concurrent confirm
            index = next((j for j in model.uploads if model.files[j].sha256 == sha), None)
            if index is None:
                return Problem(
                    f"files[{first}] {model.files[first].path!r}: its blob is no longer stored (the model that "
                    "stored it was deleted after this one was created)",
                    f"create the model again (POST {scope.path}) to get a presigned_url for it",
                )
            return await _store_upload(c, scope, model, index)

    found = await asyncio.gather(*(one(sha, first) for sha, first in firsts.items()))
    return [p for p in found if p is not None]


async def _store_upload(c: Ctx, scope: Scope, model: Model, index: int) -> Problem | None:
    """Check a copy of the bytes PUT for ``files[index]`` and store that copy as the blob."""
    file = model.files[index]
    staged = staging_key(model.id, index)
    checking = f"{staged}.checking-{secrets.token_hex(6)}"  # this attempt's own, immutable copy
    final = blob_key(scope.namespace_id, file.sha256)
    try:
        await c.store.copy(staged, checking)
    except ObjectMissing:
        if await c.store.size(final) is not None:
            return None  # a concurrent confirm stored it (and removed the staged bytes)
        return _nothing_put(scope, model, index)
    try:
        found = await c.store.digest(checking, HEAD_BYTES)
        if found is None:
            return Problem(
                f"files[{index}] {file.path!r}: its bytes disappeared while they were checked", "confirm again"
            )
        problem = staged_problem(index, file, *found)
        if problem is not None:
            return problem
        await c.store.copy(checking, final)
    except ObjectMissing:  # the checked copy went with the model's staging keys: it was deleted meanwhile
        return Problem(f"files[{index}] {file.path!r}: its bytes disappeared while they were checked", "confirm again")
    finally:
        await c.store.delete(checking)
    await c.store.delete(staged)  # the blob is stored; later PUTs to the URL are ignored
    return None


def _nothing_put(scope: Scope, model: Model, index: int) -> Problem:
    where = f"files[{index}] {model.files[index].path!r}"
    if now() > model.expires_at:
        return Problem(
            f"{where}: nothing was PUT before its presigned_url expired at {model.expires_at.isoformat()}",
            f"create the model again (POST {scope.path}) for new presigned URLs",
        )
    return Problem(f"{where}: nothing was PUT to its presigned_url", "PUT it to its presigned_url, then confirm again")


def _manifest(model: Model) -> bytes:
    manifest = ModelManifest(
        name=model.name, revision=model.revision, namespace_id=model.namespace_id, files=model.files
    )
    return manifest.model_dump_json().encode()


async def write_manifest(c: Ctx, model: Model) -> None:
    await c.store.put_bytes(manifest_key(model.namespace_id, model.name), _manifest(model), "application/json")


async def restore_manifest(c: Ctx, scope: Scope, name: str) -> None:
    """The manifest at ``name``'s key: the newest ready model's of that name, or none."""
    ready = await c.tables.models.find(namespace_id=scope.namespace_id, name=name, status="ready")
    if ready:
        await write_manifest(c, max(ready, key=_readiness))
    else:
        await c.store.delete(manifest_key(scope.namespace_id, name))


async def next_ready_at(c: Ctx, scope: Scope, name: str) -> datetime:
    """Now, or just after the latest ready model of ``name`` if that is not earlier (times are kept
    to the millisecond): a model confirmed after another always replaces it, however fast."""
    ready = await c.tables.models.find(namespace_id=scope.namespace_id, name=name, status="ready")
    at = stored_time(now())
    latest = max((m.ready_at for m in ready if m.ready_at is not None), default=None)
    return latest + timedelta(milliseconds=1) if latest is not None and at <= latest else at


def _readiness(model: Model) -> tuple[datetime, str]:
    return model.ready_at or model.created_at, model.id


async def replace_older(c: Ctx, scope: Scope, ready: Model) -> None:
    """Remove the ready models of ``ready``'s name that became ready before it, and their unshared blobs.

    Only older ones: of two models of one name made ready at once, the later keeps its record.
    """
    for old in await c.tables.models.find(namespace_id=scope.namespace_id, name=ready.name, status="ready"):
        if old.id == ready.id or _readiness(old) > _readiness(ready):  # a racing confirm's, newer: it stays
            continue
        if await c.tables.models.delete(old.id):
            await _delete_unshared_blobs(c, scope, old)
            await _delete_staging(c, old.id)
            log.info("model %s (%s of %s) replaced by %s", old.id, old.name, scope.label, ready.id)


async def _delete_unshared_blobs(c: Ctx, scope: Scope, model: Model) -> None:
    others = await c.tables.models.find(namespace_id=scope.namespace_id)
    in_use = {f.sha256 for other in others if other.id != model.id for f in other.files}
    for sha in sorted({f.sha256 for f in model.files} - in_use):
        await c.store.delete(blob_key(scope.namespace_id, sha))


async def _delete_staging(c: Ctx, model_id: str) -> None:
    """Whatever is left under the model's staging keys (bytes PUT but not needed, failed checks' copies)."""
    for key in await c.store.keys(staging_key(model_id, 0).rsplit("/", 1)[0] + "/"):
        await c.store.delete(key)
