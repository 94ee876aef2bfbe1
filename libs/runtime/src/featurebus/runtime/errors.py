"""The one error a plugin host raises, and how an exception from plugin code becomes one."""

from __future__ import annotations

import errno
import traceback
from pathlib import Path
from typing import Any

from featurebus.common.events import ReasonCode
from featurebus.sdk.violations import SandboxViolation

__all__ = ["PluginError", "describe", "sandbox_refusal"]


class PluginError(Exception):
    """The plugin could not be loaded or could not answer; ``reason`` is a ReasonCode."""

    def __init__(self, reason: ReasonCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.hint = reason, message, hint

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray) intact
        return (PluginError, (self.reason, self.message, self.hint))


def describe(exc: BaseException, plugin_dir: Path) -> str:
    """The exception, and where in the plugin's own code it came from."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        try:
            rel = Path(frame.filename).resolve().relative_to(plugin_dir)
        except ValueError:
            continue
        where = f" (at {rel.as_posix()}:{frame.lineno})"
        break
    return f"{type(exc).__name__}: {exc}{where}"


_REFUSED_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS}


def sandbox_refusal(exc: BaseException, plugin_dir: Path, memory_limit_bytes: int | None) -> PluginError | None:
    """A ``sandbox_violation`` error when ``exc`` is (or was caused by) a refusal of the sandbox.

    ``memory_limit_bytes`` is set only inside the platform's sandbox; without it a MemoryError or
    a permission error is the plugin's own failure, not the sandbox's.
    """
    seen: BaseException | None = exc
    for _ in range(16):  # the plugin may have wrapped the violation in an error of its own
        if seen is None:
            break
        if isinstance(seen, SandboxViolation):
            return PluginError(ReasonCode.SANDBOX_VIOLATION, seen.message, seen.hint)
        if isinstance(seen, MemoryError) and memory_limit_bytes:
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the plugin ran out of memory: its limit is {memory_limit_bytes / 1024**3:g} GiB "
                f"({describe(seen, plugin_dir)})",
                "raise compute_profile.actor_memory_gb, or lower compute_profile.batch_size",
            )
        if memory_limit_bytes and isinstance(seen, OSError) and seen.errno in _REFUSED_ERRNOS:
            # In the sandbox these come from the kernel's side of it (seccomp, read-only mounts).
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the sandbox refused an operation: {type(seen).__name__}: {seen}",
                "plugin code may not start processes, write outside its scratch directory or open connections",
            )
        seen = seen.__cause__ or seen.__context__
    return None
