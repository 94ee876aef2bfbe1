"""Models in the object store: the layout the registry writes and inference reads.

Two scopes share one layout. **Cluster models** are Hugging Face repos an operator imports
(``featurebus models import``): any plugin of the installation may load them by repo id, as
``SentenceTransformer(...)``, ``from_pretrained(...)``, ``load_hf_model(...)`` or
``LazyModelMixin`` name them. **Namespace models** are weights a namespace uploads through its
Models API: only that namespace's plugins see them (``load_namespace_model(name)``).

- ``models/<scope>/blobs/<sha256>``: file contents, content-addressed (a file shared by two
  models of a scope is stored once); ``<scope>`` is ``cluster`` or ``namespaces/<namespace_id>``.
- ``models/<scope>/manifests/<name>.json``: a :class:`ModelManifest`, written last, when every
  blob it names is stored and checked; a reader that finds it may fetch every file it lists.
- ``models/staging/<model_id>/<index>``: where an upload's presigned URLs write, before checking.

Weights must be in a format that cannot run code when loaded (safetensors, ONNX, GGUF): pickle
files (``.bin``, ``.pt``, ``.ckpt``, ...) are refused, whatever their scope.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePosixPath
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_FILES",
    "NAMESPACE_MODEL_NAME",
    "REPO_ID",
    "ModelFile",
    "ModelManifest",
    "blob_key",
    "content_problem",
    "file_problem",
    "is_cross_encoder",
    "manifest_key",
    "revision_of",
    "staging_key",
    "weights_format",
]

MAX_FILES = 1000
MAX_PATH = 512
# A namespace model's name (the guide's ``my-fine-tuned-bert_1_0_0``).
NAMESPACE_MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# A Hugging Face repo id: ``name`` or ``owner/name``.
REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$"

# Weight formats that load without running code, by suffix.
SAFE_WEIGHTS = {".safetensors": "safetensors", ".onnx": "onnx", ".gguf": "gguf"}
# Files that unpickle when loaded: refused (an archive of code, not of numbers).
PICKLED = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")


class ModelFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str  # relative, POSIX: "config.json", "1_Pooling/config.json", "model.safetensors"
    sha256: str
    size_bytes: int = Field(ge=0)


class ModelManifest(BaseModel):
    """One model revision as stored: what a worker lays out as a local model directory."""

    model_config = ConfigDict(extra="ignore")

    name: str  # the repo id (cluster) or the namespace model's name
    revision: str
    namespace_id: str | None = None  # None: a cluster model
    files: list[ModelFile]

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


def _scope(namespace_id: str | None) -> str:
    return "models/cluster" if namespace_id is None else f"models/namespaces/{namespace_id}"


def blob_key(namespace_id: str | None, sha256: str) -> str:
    return f"{_scope(namespace_id)}/blobs/{sha256}"


def manifest_key(namespace_id: str | None, name: str) -> str:
    return f"{_scope(namespace_id)}/manifests/{quote(name, safe='')}.json"


def staging_key(model_id: str, index: int) -> str:
    return f"models/staging/{model_id}/{index}"


def revision_of(files: list[ModelFile]) -> str:
    """A revision name for files imported without one: 40 hex digits, like a Hub commit, that
    change whenever a file does."""
    lines = "".join(f"{f.path}\0{f.sha256}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha1(lines.encode(), usedforsecurity=False).hexdigest()


def weights_format(path: str) -> str | None:
    """``safetensors`` / ``onnx`` / ``gguf`` for a weights file, None for any other file."""
    return SAFE_WEIGHTS.get(PurePosixPath(path).suffix.lower())


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be a file of a stored model (None when it can)."""
    if not path or len(path) > MAX_PATH:
        return f"a file path must have 1 to {MAX_PATH} characters"
    pure = PurePosixPath(path)
    if pure.is_absolute() or "\\" in path or any(part in ("", ".", "..") for part in path.split("/")):
        return "a file path must be relative, with '/' separators and no '.' or '..' parts"
    if not re.fullmatch(r"[A-Za-z0-9._@+=,-]+(/[A-Za-z0-9._@+=,-]+)*", path):
        return "a file path may hold only letters, digits and . _ - @ + = , characters"
    if any(part.lower().endswith(PICKLED) for part in pure.parts[-1:]):
        return (
            "pickled weights run code when they are loaded and are refused: convert them to "
            "safetensors (safetensors.torch.save_file(model.state_dict(), 'model.safetensors')), ONNX or GGUF"
        )
    return None


def content_problem(path: str, head: bytes) -> str | None:
    """Why the first bytes of a weights file are not of the format its suffix names (None if they are)."""
    fmt = weights_format(path)
    if fmt == "safetensors":
        size = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
        if not (0 < size < 100 * 1024**2 and head[8:9] == b"{"):
            return "is not a safetensors file (it must start with an 8-byte header length and a JSON header)"
    elif fmt == "gguf" and head[:4] != b"GGUF":
        return "is not a GGUF file (it must start with the bytes 'GGUF')"
    elif fmt == "onnx" and head[:1] != b"\x08":
        return "is not an ONNX model (a serialized onnx.ModelProto starts with its ir_version field)"
    return None


def is_cross_encoder(config: object) -> bool:
    """Whether a model's parsed ``config.json`` names a ``...ForSequenceClassification``
    architecture: what sentence-transformers' ``CrossEncoder`` loads, and a rerank stage needs."""
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return any(str(a).endswith("ForSequenceClassification") for a in architectures or [])
