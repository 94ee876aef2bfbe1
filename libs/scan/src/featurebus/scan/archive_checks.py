"""Zip-level checks, judged on the bytes actually read, never on what headers claim."""

from __future__ import annotations

import io
import itertools
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from featurebus.common.events import Violation
from featurebus.scan.security_rules import SDK_ROOTS

__all__ = ["Archive", "Limits", "read_archive"]

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_compressed: int = 500 * MB
    max_extracted: int = 500 * MB
    max_files: int = 1000
    max_source_file: int = 2 * MB  # a .py file larger than this is not plugin source
    # An entry that inflates more than this many times (and past 1 MB) is treated as a bomb.
    max_ratio: int = 200


@dataclass
class Archive:
    """The plugin's files, relative to the directory holding manifest.py."""

    files: dict[str, bytes] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)


def _v(code: str, message: str, filename: str = "<archive>", hint: str | None = None) -> Violation:
    return Violation(filename=filename, line=0, severity="ERROR", code=code, message=message, hint=hint)


def _path_problem(name: str) -> str | None:
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "escapes the archive with '..'"
    if any(ord(c) < 32 for c in name):
        return "contains control characters"
    return None


def read_archive(data: bytes, limits: Limits = Limits()) -> Archive:
    """Read every member into memory with running caps; report what is unsafe or missing."""
    archive = Archive()
    if len(data) > limits.max_compressed:
        archive.violations.append(_v("ARC001", f"archive is {len(data) / MB:.0f} MB; the limit is 500 MB compressed"))
        return archive
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        archive.violations.append(
            _v("ARC002", f"not a zip archive: {exc}", hint="package with `zip -r name.zip name/`")
        )
        return archive
    if len(infos) > limits.max_files:
        archive.violations.append(_v("ARC003", f"archive has {len(infos)} entries; the limit is {limits.max_files}"))
        return archive
    overlap = _overlapping(infos)
    if overlap:
        archive.violations.append(_v("ARC015", f"entries {overlap} overlap in the archive (a zip bomb technique)"))
        return archive
    seen: set[str] = set()
    total = 0
    raw: dict[str, bytes] = {}
    for info in infos:
        name = info.filename
        problem = _path_problem(name)
        if problem:
            archive.violations.append(_v("ARC004", f"entry {name!r} {problem}", name))
            continue
        if name.lower() in seen:
            archive.violations.append(_v("ARC005", f"duplicate entry {name!r}", name))
            continue
        seen.add(name.lower())
        if stat.S_ISLNK(info.external_attr >> 16):
            archive.violations.append(_v("ARC006", f"entry {name!r} is a symbolic link", name))
            continue
        if info.flag_bits & 0x1:
            archive.violations.append(_v("ARC007", f"entry {name!r} is encrypted", name))
            continue
        if info.is_dir():
            continue
        try:
            with zf.open(info) as member:
                chunks, size = [], 0
                while chunk := member.read(1024 * 1024):
                    size += len(chunk)
                    total += len(chunk)
                    if size > MB and size > limits.max_ratio * max(info.compress_size, 1):
                        archive.violations.append(
                            _v("ARC016", f"{name} inflates more than {limits.max_ratio}x (a zip bomb?)", name)
                        )
                        return archive
                    if total > limits.max_extracted:
                        archive.violations.append(
                            _v("ARC008", "archive extracts to more than 500 MB (a zip bomb?)", name)
                        )
                        return archive
                    if name.endswith(".py") and size <= limits.max_source_file:
                        chunks.append(chunk)
                raw[name] = b"".join(chunks) if name.endswith(".py") and size <= limits.max_source_file else b""
                if name.endswith(".py") and size > limits.max_source_file:
                    archive.violations.append(
                        _v("ARC009", f"{name} is {size / MB:.1f} MB: too large to be plugin source", name)
                    )
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:  # corrupt member, bad CRC
            archive.violations.append(_v("ARC010", f"entry {name!r} cannot be read: {exc}", name))
    archive.files = _rebase(raw, archive)
    return archive


UNREADABLE_SUFFIXES = {
    ".so": "a compiled extension", ".pyd": "a compiled extension", ".dll": "a native library",
    ".dylib": "a native library", ".pyc": "compiled bytecode", ".pyo": "compiled bytecode",
    ".pth": "a path configuration file that runs code at interpreter start", ".egg": "a nested package",
    ".whl": "a nested package", ".zip": "a nested archive", ".tar": "a nested archive", ".tgz": "a nested archive",
    ".gz": "a nested archive", ".bz2": "a nested archive", ".xz": "a nested archive", ".7z": "a nested archive",
    ".rar": "a nested archive", ".jar": "a nested archive",
}  # fmt: skip
BUILD_FILES = {"setup.py", "setup.cfg", "pyproject.toml", "sitecustomize.py", "usercustomize.py", "__main__.py"}
SDK_NAMES = {*SDK_ROOTS, "featurebus_plugins"}


def unreadable_code(name: str) -> str | None:
    """Why the scanner cannot vouch for this file, or None."""
    path = PurePosixPath(name)
    if "__pycache__" in path.parts:
        return "is compiled bytecode (__pycache__)"
    if path.name in BUILD_FILES:
        return "is a build or start-up file that runs code outside the plugin contract"
    for suffix in path.suffixes[-1:]:
        if suffix.lower() in UNREADABLE_SUFFIXES:
            return f"is {UNREADABLE_SUFFIXES[suffix.lower()]}, code the scanner cannot read"
    return None


def shadowed_module(name: str) -> str | None:
    """A top-level module of the plugin that would shadow the standard library or the SDK."""
    top = PurePosixPath(name).parts[0]
    module = top[:-3] if top.endswith(".py") and len(PurePosixPath(name).parts) == 1 else top
    if module in sys.stdlib_module_names or module in SDK_NAMES:
        return module
    return None


def _overlapping(infos: list[zipfile.ZipInfo]) -> tuple[str, str] | None:
    """Two entries whose data ranges overlap (entries that share compressed bytes)."""
    # The local header is at least 30 bytes plus the name: an underestimate, so never a false alarm.
    spans = sorted(
        (info.header_offset, info.header_offset + 30 + len(info.filename) + info.compress_size, info.filename)
        for info in infos
    )
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            return first, second
    return None


def _rebase(raw: dict[str, bytes], archive: Archive) -> dict[str, bytes]:
    """Paths relative to the plugin root: the archive root, or its single top-level directory."""
    root = ""
    if "manifest.py" not in raw:
        candidates = [n[: -len("manifest.py")] for n in raw if n.endswith("/manifest.py") and n.count("/") == 1]
        if len(candidates) == 1:
            root = candidates[0]
    files = {name[len(root) :]: body for name, body in raw.items() if name.startswith(root)}
    for name in sorted(files):
        reason = unreadable_code(name)
        if reason:
            archive.violations.append(_v("ARC013", f"{name} {reason}", name, "ship Python source and data files only"))
        shadow = shadowed_module(name)
        if shadow and name not in ("manifest.py", "pipeline.py", "realtime.py"):
            archive.violations.append(
                _v("ARC014", f"{name} shadows the module {shadow!r} (standard library or SDK)", name, "rename it")
            )
    outside = sorted(name for name in raw if not name.startswith(root) and not name.startswith("__MACOSX/"))
    if outside:
        archive.violations.append(
            _v(
                "ARC012",
                f"files outside the plugin directory {root or '/'} would never be loaded: {outside[:5]}",
                outside[0],
            )
        )
    for required in ("manifest.py", "pipeline.py"):
        if required not in files:
            archive.violations.append(
                _v(
                    "ARC011",
                    f"{required} is missing: it must sit at the archive root or in its single top-level directory",
                    hint="package with `zip -r my_extractor.zip my_extractor/`",
                )
            )
    return files
