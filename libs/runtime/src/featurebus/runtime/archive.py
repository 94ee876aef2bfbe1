"""A plugin archive laid out on disk, refusing paths that would land outside it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

from featurebus.common.events import ReasonCode
from featurebus.runtime.errors import PluginError

__all__ = ["unpack_archive"]


def unpack_archive(archive: bytes, dest: Path) -> Path:
    """Extract a plugin zip into ``dest``; returns the directory that holds ``manifest.py``.

    That is the archive's root, or its single top-level directory (``zip -r name.zip name/``).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith("/") or ".." in parts:
                raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"unsafe path in archive: {info.filename!r}")
        zf.extractall(dest)
    if (dest / "manifest.py").exists():
        return dest
    tops = [p for p in dest.iterdir() if p.is_dir() and p.name != "__MACOSX"]
    if len(tops) == 1 and (tops[0] / "manifest.py").exists():
        return tops[0]
    raise PluginError(
        ReasonCode.PLUGIN_LOAD_FAILED,
        "archive has no manifest.py at its root or in its single top-level directory",
    )
