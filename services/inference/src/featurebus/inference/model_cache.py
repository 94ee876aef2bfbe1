"""A node's copy of the models its plugins load: laid out before a plugin starts, size-bounded.

Cluster models go into the node's Hugging Face cache (``<hf_home>/hub/models--owner--name``,
with ``blobs/``, ``snapshots/<revision>/`` and ``refs/main`` as the Hub's own downloads make
them), so that ``from_pretrained``, ``SentenceTransformer`` and friends find them offline,
unchanged. Namespace models go under ``<namespaces_root>/<namespace_id>/<name>/``; a sandbox sees
only its own namespace's directory.

Every file is checked against its SHA-256 as it is written, and a model counts as present only
when its marker (written last) is; the workers of one node install a model once between them
(a lock file per model). When the models installed here exceed ``max_bytes``, the least recently
used ones are removed (never the one being installed; a process that already loaded a removed
model keeps its open copy).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurebus.common.model_store import ModelManifest

__all__ = ["ModelDamaged", "ModelShipment", "NodeModels", "install_models", "node_lock"]

log = logging.getLogger("featurebus.inference.models")

MARKER = ".featurebus-model.json"


@dataclass(frozen=True)
class ModelShipment:
    """A model as it travels to a worker: its manifest and a handle per blob (a Ray object ref,
    or the bytes themselves), which the node's ``fetch`` turns into bytes only if it lacks them."""

    manifest: ModelManifest
    blobs: dict[str, Any] = field(default_factory=dict)


class ModelDamaged(RuntimeError):
    """A shipped file is not what the manifest says."""


class NodeModels:
    def __init__(self, hf_home: Path, namespaces_root: Path, max_bytes: int) -> None:
        self.hf_home = hf_home
        self.namespaces_root = namespaces_root
        self.max_bytes = max_bytes

    def namespace_dir(self, namespace_id: str) -> Path:
        return self.namespaces_root / namespace_id

    def install(self, shipment: ModelShipment, fetch: Callable[[Any], bytes]) -> Path:
        """The model's directory on this node, installing it first if it is not here."""
        manifest = shipment.manifest
        root = self._root(manifest)
        root.mkdir(parents=True, exist_ok=True)
        with node_lock(root.with_name(root.name + ".lock")):
            if not self._present(root, manifest):
                self._lay_out(root, shipment, fetch)
                log.info(
                    "model %s@%s installed (%d bytes)", manifest.name, manifest.revision[:12], manifest.total_bytes
                )
            (root / MARKER).touch()  # most recently used
        self._evict(keep=root)
        return self._snapshot(root, manifest)

    # ------------------------------------------------------------------------------- layout

    def _root(self, manifest: ModelManifest) -> Path:
        if manifest.namespace_id is None:
            return self.hf_home / "hub" / ("models--" + manifest.name.replace("/", "--"))
        return self.namespace_dir(manifest.namespace_id) / manifest.name

    def _snapshot(self, root: Path, manifest: ModelManifest) -> Path:
        return root / "snapshots" / manifest.revision if manifest.namespace_id is None else root / "files"

    def _present(self, root: Path, manifest: ModelManifest) -> bool:
        marker = root / MARKER
        try:
            if ModelManifest.model_validate_json(marker.read_text()) != manifest:
                return False
        except (OSError, ValueError):
            return False
        snapshot = self._snapshot(root, manifest)
        return all(_size(snapshot / f.path) == f.size_bytes for f in manifest.files)

    def _lay_out(self, root: Path, shipment: ModelShipment, fetch: Callable[[Any], bytes]) -> None:
        manifest = shipment.manifest
        (root / MARKER).unlink(missing_ok=True)
        blobs = root / "blobs"
        blobs.mkdir(exist_ok=True)
        snapshot = self._snapshot(root, manifest)
        if snapshot.exists():  # a revision half laid out, or replaced under the same name
            shutil.rmtree(snapshot)
        for f in manifest.files:
            blob = blobs / f.sha256
            if _size(blob) != f.size_bytes or not _matches(blob, f.sha256):
                data = fetch(shipment.blobs[f.sha256])
                if len(data) != f.size_bytes or hashlib.sha256(data).hexdigest() != f.sha256:
                    raise ModelDamaged(f"model {manifest.name}: {f.path} does not match its sha256 {f.sha256}")
                tmp = blob.with_name(f"{blob.name}.{secrets.token_hex(4)}.part")
                tmp.write_bytes(data)
                tmp.replace(blob)
            target = snapshot / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(os.path.relpath(blob, target.parent))
        if manifest.namespace_id is None:
            (root / "refs").mkdir(exist_ok=True)
            (root / "refs" / "main").write_text(manifest.revision)
        in_use = {f.sha256 for f in manifest.files}
        for stale in blobs.iterdir():  # blobs of a revision this one replaced
            if stale.name not in in_use:
                stale.unlink(missing_ok=True)
        (root / MARKER).write_text(manifest.model_dump_json())

    # ------------------------------------------------------------------------------ eviction

    def _installed(self) -> Iterator[tuple[float, int, Path]]:
        """(last use, bytes, directory) of every model this cache installed."""
        for marker in [*self.hf_home.glob(f"hub/*/{MARKER}"), *self.namespaces_root.glob(f"*/*/{MARKER}")]:
            try:
                used = marker.stat().st_mtime
            except FileNotFoundError:
                continue
            size = sum(_size(b) for b in (marker.parent / "blobs").glob("*"))
            yield used, size, marker.parent

    def _evict(self, keep: Path) -> None:
        installed = sorted(self._installed())
        total = sum(size for _, size, _ in installed)
        for _, size, root in installed:
            if total <= self.max_bytes:
                break
            if root == keep:
                continue
            with node_lock(root.with_name(root.name + ".lock")):
                (root / MARKER).unlink(missing_ok=True)
                shutil.rmtree(root, ignore_errors=True)
            total -= size
            log.info("model cache over %d bytes: removed %s (least recently used)", self.max_bytes, root.name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _matches(path: Path, sha256: str) -> bool:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == sha256


@contextmanager
def node_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` among this node's processes (workers installing the same thing)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_models(
    node: NodeModels, shipments: list[ModelShipment], fetch: Callable[[Any], bytes], namespace_id: str
) -> Path | None:
    """Install what a worker of a plugin of ``namespace_id`` was shipped; the namespace's model
    directory on this node (made if need be), None for a worker of no namespace.

    A model that cannot be installed is left out, logged: the plugin then fails
    ``model_not_available`` when it loads it.
    """
    for shipment in shipments:
        try:
            node.install(shipment, fetch)
        except (OSError, ModelDamaged) as exc:
            log.error("model %s could not be installed on this node: %s", shipment.manifest.name, exc)
    if not namespace_id:
        return None
    own = node.namespace_dir(namespace_id)
    own.mkdir(parents=True, exist_ok=True)
    return own
