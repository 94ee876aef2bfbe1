"""Plugin environments: the packages a plugin's manifest depends on beyond the workers' libraries.

The scanner turns such dependencies into exact pins of the operator's installable packages
(``PluginRef.environment``, :mod:`featurebus.scan.dependencies`). On the node a worker starts on,
:meth:`PluginEnvironments.install` puts them in a directory of their own — once per node and set
of pins, under a file lock, so that the actors of a pool starting together install it once — with
``pip install --no-deps --only-binary :all:``: exactly the listed wheels, no resolver choosing
other packages, and no build script of a source distribution run. The directory then comes first
on the plugin's ``sys.path`` (read-only inside its sandbox); the workers' own libraries stay
beneath it, shared by every plugin.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from featurebus.common.events import ReasonCode
from featurebus.inference.model_cache import node_lock
from featurebus.inference.sandbox.supervisor import SandboxConfig
from featurebus.runtime import PluginError

__all__ = ["EnvironmentFailed", "PluginEnvironments", "entered", "node_environment"]

log = logging.getLogger("featurebus.inference.plugin_envs")

_COMPLETE = ".featurebus-environment.json"
_HINT = (
    "check that the Ray node reaches the package index (FEATUREBUS_PLUGIN_INDEX_URL, or a wheel directory in "
    "FEATUREBUS_PLUGIN_FIND_LINKS) and that each pinned version of the platform's installable packages "
    "exists as a wheel for this Python and platform"
)


class EnvironmentFailed(Exception):
    """pip could not install the environment: its own words, trimmed."""


@dataclass(frozen=True)
class PluginEnvironments:
    """Where a node keeps plugin environments and where pip finds their wheels (travels to Ray actors).

    ``index_url``: None uses pip's own configuration (PyPI unless pip.conf says otherwise); ""
    installs only from ``find_links`` (``--no-index``).
    """

    root: Path
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    timeout_s: float = 600.0

    def path(self, pins: Sequence[str]) -> Path:
        """The environment's directory: named by its pins and by this interpreter (ABI and platform)."""
        identity = json.dumps([sorted(pins), sys.version, platform.machine(), sys.platform])
        return self.root / hashlib.sha256(identity.encode()).hexdigest()[:24]

    def install(self, pins: Sequence[str]) -> Path:
        """The directory holding exactly ``pins`` on this node, installed now unless it already is."""
        target = self.path(pins)
        if (target / _COMPLETE).exists():
            return target
        self.root.mkdir(parents=True, exist_ok=True)
        with node_lock(target.with_name(target.name + ".lock")):
            if (target / _COMPLETE).exists():  # another worker installed it while this one waited
                return target
            staging = target.with_name(f".{target.name}.{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            started = time.monotonic()
            try:
                self._pip(pins, staging)
                (staging / _COMPLETE).write_text(json.dumps({"pins": sorted(pins)}))
                shutil.rmtree(target, ignore_errors=True)  # a half-made one of a process that died
                staging.rename(target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            log.info(
                "installed plugin environment %s (%s) in %.1f s",
                target.name,
                ", ".join(pins),
                time.monotonic() - started,
            )
        return target

    def _pip(self, pins: Sequence[str], into: Path) -> None:
        command = [
            sys.executable, "-m", "pip", "install",
            "--no-deps", "--only-binary", ":all:", "--no-input", "--disable-pip-version-check",
            "--no-warn-script-location", "--target", str(into),
        ]  # fmt: skip
        if self.index_url == "":
            command.append("--no-index")
        elif self.index_url is not None:
            command += ["--index-url", self.index_url]
        for links in self.find_links:
            command += ["--find-links", links]
        try:
            done = subprocess.run(
                [*command, *pins], capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise EnvironmentFailed(f"pip did not finish within {self.timeout_s:.0f} s") from None
        if done.returncode != 0:
            said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            errors = [line for line in said if "ERROR" in line] or said[-3:]
            raise EnvironmentFailed(" ".join(errors)[-1500:] or f"pip exited with {done.returncode}")


def node_environment(
    environments: PluginEnvironments | None, pins: Sequence[str], plugin_id: str
) -> Path | PluginError | None:
    """The plugin's environment on this node (None when it needs none), or why it cannot have it."""
    if not pins:
        return None
    if environments is None:
        return PluginError(
            ReasonCode.ENVIRONMENT_FAILED,
            f"plugin {plugin_id} depends on {', '.join(pins)}, and this inference service installs no plugin environments",
            _HINT,
        )
    try:
        return environments.install(pins)
    except (EnvironmentFailed, OSError) as exc:
        return PluginError(
            ReasonCode.ENVIRONMENT_FAILED,
            f"plugin {plugin_id}'s environment ({', '.join(pins)}) could not be installed: {exc}",
            _HINT,
        )


def entered(site: Path | None, sandbox: SandboxConfig | None) -> SandboxConfig | None:
    """The plugin's sandbox with its environment in it; for a plugin run unconfined (the sandbox
    off), the environment first on this worker process's own path."""
    if site is None:
        return sandbox
    if sandbox is None:
        sys.path.insert(0, str(site))
        return None
    return dataclasses.replace(sandbox, site_dirs=(str(site),))
