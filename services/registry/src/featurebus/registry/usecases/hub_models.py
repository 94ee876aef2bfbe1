"""Cluster models fetched from a model hub the first time a plugin names one (``FEATUREBUS_MODEL_HUB``).

Inference asks (``POST /internal/v1/models/fetch``) for each cluster model a plugin names that the
model registry lacks. With the hub off the answer is ``unavailable`` and the plugin fails
``model_not_available`` naming the import command, as without this. With it on, the first ask
records the model as ``fetching`` and downloads it here, once for the whole installation: the
record is what later asks — of any inference process, for any plugin — find, so that no worker
and no other process downloads it again. The download takes only what a worker may load: the
repo's files less pickled weights, which are left out beside safetensors/ONNX/GGUF ones and make a
repo that has nothing else ``failed``. The files are checked as an import's are, stored
content-addressed, and the manifest is written last (:mod:`featurebus.common.model_store`); the
model is then ``ready``, listed and removed like an imported one (``featurebus models list|rm``).
A failed download is answered ``failed`` with its reason for ``FEATUREBUS_MODEL_HUB_RETRY_S``, then
tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from featurebus.common import ids
from featurebus.common.model_store import PICKLED, blob_key, weights_format
from featurebus.common.queries import ModelFetchResponse
from featurebus.registry.context import Ctx
from featurebus.registry.errors import DomainError
from featurebus.registry.model_checks import FileSpec, checked_files
from featurebus.registry.records import Model, now
from featurebus.registry.tables import stored_time
from featurebus.registry.usecases.models import (
    CLUSTER,
    next_ready_at,
    replace_older,
    restore_manifest,
    write_manifest,
)

__all__ = ["HubDownload", "fetch_model", "hub_download"]

log = logging.getLogger("featurebus.registry.models")

# (repo id, directory to download into) -> (the snapshot's directory, its commit).
HubDownload = Callable[[str, Path], tuple[Path, str]]
_JUNK = (".gitattributes", ".gitignore", "README.md")


def hub_download(endpoint: str, token: str | None) -> HubDownload:
    """Hugging Face's own client against ``endpoint``: the repo's file list, then every file a worker
    may load (pickled weights left out beside safe ones; :class:`HubRefused` when only they are)."""

    def download(repo_id: str, into: Path) -> tuple[Path, str]:
        from huggingface_hub import HfApi, constants, snapshot_download

        # The operator turned the hub on for the registry (FEATUREBUS_MODEL_HUB): an HF_HUB_OFFLINE
        # this process inherited (it is the workers' setting) does not turn it off again.
        constants.HF_HUB_OFFLINE = False

        api = HfApi(endpoint=endpoint, token=token)
        info = api.model_info(repo_id)
        names = [s.rfilename for s in info.siblings or []]
        wanted = _wanted(repo_id, names)
        snapshot = snapshot_download(
            repo_id, revision=info.sha, cache_dir=str(into), endpoint=endpoint, token=token, allow_patterns=wanted
        )
        return Path(snapshot), str(info.sha or "")

    return download


class HubRefused(Exception):
    """The hub's copy holds nothing a worker may load."""


def _wanted(repo_id: str, names: list[str]) -> list[str]:
    pickled = [n for n in names if PurePosixPath(n).name.lower().endswith(PICKLED)]
    safe = [n for n in names if weights_format(n)]
    if pickled and not safe:
        raise HubRefused(
            f"the hub's {repo_id} has only pickled weights ({', '.join(sorted(pickled)[:5])}), which run code when "
            "they are loaded: convert them to safetensors and import them with featurebus models import"
        )
    kept = [n for n in names if n not in pickled and PurePosixPath(n).name not in _JUNK]
    if not kept:
        raise HubRefused(f"the hub's {repo_id} has no files")
    return kept


async def fetch_model(c: Ctx, name: str, download: HubDownload | None) -> ModelFetchResponse:
    """What inference is told about cluster model ``name``; starts its download when none runs."""
    models = await c.tables.models.find(namespace_id=None, name=name)
    if any(m.status == "ready" for m in models):
        return ModelFetchResponse(status="ready")
    if download is None:
        return ModelFetchResponse(
            status="unavailable",
            error="this installation downloads no models from a hub (FEATUREBUS_MODEL_HUB is off)",
        )
    fetched = max((m for m in models if m.status in ("fetching", "failed")), key=lambda m: m.created_at, default=None)
    if fetched is not None:
        if fetched.status == "fetching" and _running(c, fetched):
            return ModelFetchResponse(status="fetching")
        if fetched.status == "failed" and _age(fetched) < c.settings.model_hub_retry_s:
            return ModelFetchResponse(status="failed", error=fetched.error)
    model = Model(
        id=ids.new_id("mdl"),
        org_id="",
        name=name,
        revision="",
        source=f"hub:{c.settings.model_hub_endpoint}",
        files=[],
        expires_at=stored_time(now()),
        status="fetching",
        created_at=stored_time(now()),
    )
    await c.tables.models.insert(model)
    # Two asks at once (of two registries, say) both record an attempt: the earlier one downloads.
    racing = [
        m
        for m in await c.tables.models.find(namespace_id=None, name=name, status="fetching")
        if m.id != model.id and _running(c, m) and (m.created_at, m.id) < (model.created_at, model.id)
    ]
    if racing:
        await c.tables.models.delete(model.id)
        return ModelFetchResponse(status="fetching")
    for older in (m for m in models if m.status in ("fetching", "failed")):
        await c.tables.models.delete(older.id)  # a stale attempt: this one replaces it
    c.later(_fetch(c, model, download), f"fetching model {name} from the hub")
    log.info("model %s is not in the registry: fetching it from %s", name, c.settings.model_hub_endpoint)
    return ModelFetchResponse(status="fetching")


def _age(model: Model) -> float:
    return (stored_time(now()) - model.created_at).total_seconds()


def _running(c: Ctx, model: Model) -> bool:
    """A download recorded within FEATUREBUS_MODEL_HUB_TIMEOUT_S (an older one died with its registry)."""
    return _age(model) < c.settings.model_hub_timeout_s


async def _fetch(c: Ctx, model: Model, download: HubDownload) -> None:
    with tempfile.TemporaryDirectory(prefix="featurebus-hub-") as into:
        try:
            snapshot, commit = await asyncio.wait_for(
                asyncio.to_thread(download, model.name, Path(into)), c.settings.model_hub_timeout_s
            )
            specs, paths = await asyncio.to_thread(_files, snapshot)
            files = checked_files(model.name, specs, cluster=True, max_bytes=c.settings.max_model_bytes)
            for f in files:
                if await c.store.size(blob_key(None, f.sha256)) is None:
                    await c.store.put_file(blob_key(None, f.sha256), paths[f.path])
        except Exception as exc:  # the hub, the network or the files: the model is failed, saying why
            error = _reason(exc)
            await c.tables.models.update(model.id, {"status": "failed", "error": error}, status="fetching")
            log.warning("model %s could not be fetched from the hub: %s", model.name, error)
            return
    ready = model.model_copy(update={"files": files, "revision": commit or model.id, "status": "ready"})
    await write_manifest(c, ready)
    ready_at = await next_ready_at(c, CLUSTER, model.name)
    changes = {
        "status": "ready",
        "files": [f.model_dump() for f in files],
        "revision": ready.revision,
        "ready_at": ready_at,
    }
    if not await c.tables.models.update(model.id, changes, status="fetching"):
        await restore_manifest(c, CLUSTER, model.name)  # deleted meanwhile: no manifest without its record
        log.info("model %s was deleted while it was fetched", model.name)
        return
    await replace_older(c, CLUSTER, ready.model_copy(update={"ready_at": ready_at}))
    log.info("model %s fetched from the hub: %d files", model.name, len(files))


def _files(snapshot: Path) -> tuple[list[FileSpec], dict[str, Path]]:
    """Every file of the snapshot (symlinks to the cache's blobs followed), hashed as a stream."""
    specs, paths = [], {}
    for path in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        rel = path.relative_to(snapshot).as_posix()
        if path.name in _JUNK:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1024 * 1024), b""):
                digest.update(chunk)
        specs.append(FileSpec(path=rel, size_bytes=path.stat().st_size, sha256=digest.hexdigest()))
        paths[rel] = path.resolve()
    return specs, paths


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ in ("RepositoryNotFoundError", "GatedRepoError"):
        return (
            "the hub has no such repo, or it is private or gated (a token with access to it is "
            "FEATUREBUS_MODEL_HUB_TOKEN); or import the model with featurebus models import"
        )
    if isinstance(exc, TimeoutError):
        return "the download took longer than FEATUREBUS_MODEL_HUB_TIMEOUT_S"
    if isinstance(exc, DomainError):
        return f"{exc.detail} ({exc.hint})" if exc.hint else exc.detail
    text = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
