"""The in-process guard of a sandboxed plugin: refused operations become clear errors.

Not the boundary — the namespaces, mounts and seccomp filter around the process are — but what
makes a refusal *say* what was refused: without it a read outside the sandbox is a bare
FileNotFoundError and a blocked connection a bare ConnectionRefusedError, indistinguishable from a
plugin's own bug. Every refusal raises :class:`~featurebus.sdk.violations.SandboxViolation` at the
call and is recorded, so a frame whose plugin swallowed the error still fails with
``sandbox_violation``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from featurebus.sdk.violations import SandboxViolation

__all__ = ["Guard"]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_PROCESS_EVENTS = {
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.startfile", "pty.spawn",
}  # fmt: skip
_DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random", "/dev/tty")
_CTYPES_DIR = str(Path(sys.modules["os"].__file__ or "").parent / "ctypes")


@dataclass
class Guard:
    """Refuses what the sandbox refuses: reads outside ``readable``, writes outside ``scratch``,
    network connections (unless ``egress``), processes, and native libraries loaded by the
    plugin's own code or from outside the Python environment."""

    readable: list[str]
    scratch: str
    plugin_dir: str
    native_roots: list[str]
    egress: bool = False
    forbidden: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        sys.addaudithook(self._hook)

    def count(self) -> int:
        return len(self.violations)

    def since(self, mark: int) -> list[str]:
        with self._lock:
            return self.violations[mark:]

    def refuse(self, message: str, hint: str) -> SandboxViolation:
        with self._lock:
            self.violations.append(message)
        return SandboxViolation(message, hint)

    # --------------------------------------------------------------------------------- the hook

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            self._open(*args[:3])
        elif event in ("os.listdir", "os.scandir") and args and args[0] is not None:
            self._open(args[0], "r", 0)
        elif event == "socket.connect":
            self._connect(args[1])
        elif event in _PROCESS_EVENTS:
            raise self.refuse(
                f"starting a process ({event}) was refused: plugin code may not start processes",
                "do the work in Python inside the plugin (threads are allowed)",
            )
        elif event == "ctypes.dlopen":
            self._dlopen(args[0])

    def _open(self, path: Any, mode: Any, flags: Any) -> None:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # an fd already open
        name = os.fsdecode(path)
        full = os.path.normpath(os.path.join(os.getcwd(), name))
        if not _within(full, self.readable):
            full = os.path.realpath(full)  # a link (/lib -> /usr/lib, the model cache) may lead inside
        if _within(full, self.forbidden) and not _within(full, [self.plugin_dir, *self._bound_under_forbidden()]):
            raise self.refuse(
                f"access to {name!r} was refused: it is the platform's data directory, not the plugin's",
                "ship the files the plugin needs inside its archive; read blobs with open_asset(batch['data'])",
            )
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writing:
            if not (_within(full, [self.scratch]) or full in _DEVICES):
                raise self.refuse(
                    f"writing {name!r} was refused: plugin code may write only in its scratch directory "
                    f"{self.scratch} (emptied after every frame)",
                    f"write temporary files with tempfile or under {self.scratch}",
                )
        elif not _within(full, self.readable):
            raise self.refuse(
                f"reading {name!r} was refused: plugin code may read only its own files, the Python "
                "environment, the model cache and its scratch directory",
                "ship the files the plugin needs inside its archive; read blobs with open_asset(batch['data'])",
            )

    def _bound_under_forbidden(self) -> list[str]:
        return [p for p in self.readable if _within(p, self.forbidden)]

    def _connect(self, address: Any) -> None:
        if self.egress and _public(address):
            return
        if self.egress:
            raise self.refuse(
                f"a network connection to {_address(address)} was refused: API plugins may reach only public "
                "internet addresses (not loopback, link-local/metadata or private networks)",
                "call the public endpoint of the API",
            )
        raise self.refuse(
            f"a network connection to {_address(address)} was refused: plugins have no network access here",
            "read blobs with open_asset(batch['data']); an operator can allow outbound internet for API "
            "plugins with FEATUREBUS_SANDBOX_EGRESS",
        )

    def _dlopen(self, name: Any) -> None:
        library = os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else None
        # Libraries (torch, transformers, ...) may load system libraries by name or their own by
        # path; the plugin's own code may load none, and nothing outside the environment loads.
        allowed = not _called_from(self.plugin_dir)
        if library is not None and os.path.isabs(library):
            allowed = allowed and _within(os.path.realpath(library), self.native_roots)
        if not allowed:
            raise self.refuse(
                f"loading the native library {library!r} was refused: plugin code may not load native code",
                "use the libraries of the Python environment (numpy, torch, onnxruntime, ...) from Python",
            )


def _within(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _called_from(plugin_dir: str) -> bool:
    """Whether the code that called into ctypes is the plugin's own (not a library it uses)."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_CTYPES_DIR) or frame.f_code.co_filename == __file__
    ):
        frame = frame.f_back
    return frame is not None and _within(frame.f_code.co_filename, [plugin_dir])


def _public(address: Any) -> bool:
    """Whether ``address`` is a public internet address (a host name is resolved first)."""
    if not (isinstance(address, tuple) and len(address) >= 2):
        return False  # a unix socket, or something else that is not the internet
    try:
        ips = {ipaddress.ip_address(address[0])}
    except ValueError:
        try:
            ips = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(address[0], address[1])}
        except OSError:
            return False
    return all(ip.is_global for ip in ips)


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)
