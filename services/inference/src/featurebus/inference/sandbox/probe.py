"""A start-up check: can this machine sandbox plugins? Fails closed, naming what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from featurebus.inference.sandbox.policy import SandboxPolicy, SandboxUnavailable

__all__ = ["probe"]

# Inside a real sandbox: seccomp must refuse a fork, and no network but loopback may exist.
_CHECK = """
import os, socket, sys
from featurebus.inference.sandbox import seccomp_rules
try:
    seccomp_rules.install()
except Exception as exc:
    print(f"seccomp: {exc}", file=sys.stderr); sys.exit(11)
try:
    os.fork()
except PermissionError:
    pass
else:
    sys.exit(12)
names = [name for _, name in socket.if_nameindex()]
sys.exit(0 if names == ["lo"] else 13)
"""
_WHY = {
    11: "seccomp filters could not be loaded (libseccomp2 and a kernel with CONFIG_SECCOMP_FILTER are needed)",
    12: "the seccomp filter did not refuse fork()",
    13: "the network namespace is not isolated (interfaces other than loopback are visible)",
}


def probe(timeout: float = 60.0) -> None:
    """Start one empty sandbox; raise :class:`SandboxUnavailable` saying which feature failed."""
    with tempfile.TemporaryDirectory(prefix="fb-sandbox-probe-") as tmp:
        plugin_dir, scratch = Path(tmp) / "plugin", Path(tmp) / "scratch"
        plugin_dir.mkdir()
        scratch.mkdir()
        policy = SandboxPolicy(plugin_dir=plugin_dir, scratch_mount=scratch)
        info_r, info_w = os.pipe()
        try:
            command = policy.command([sys.executable, "-I", "-c", _CHECK], info_fd=info_w)
            done = subprocess.run(command, capture_output=True, timeout=timeout, pass_fds=(info_w,))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxUnavailable(f"the plugin sandbox could not be started: {exc}") from exc
        finally:
            os.close(info_w)
            os.close(info_r)
    if done.returncode == 0:
        return
    err = done.stderr.decode("utf-8", "replace").strip()[-1500:]
    why = _WHY.get(done.returncode) or (
        "unprivileged user and mount namespaces are needed (unshare --user --map-root-user --mount), "
        "and bubblewrap must be able to create user, pid, net and ipc namespaces"
    )
    raise SandboxUnavailable(
        f"plugins cannot be sandboxed on this machine: {why} [{err}]. Fix the kernel settings "
        "(e.g. kernel.unprivileged_userns_clone=1, no AppArmor userns restriction) or, only for plugins "
        "you trust, set FEATUREBUS_SANDBOX=off"
    )
