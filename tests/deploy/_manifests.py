"""Reading what deploy/compose, deploy/k8s and the image declare, for the static deploy tests.

Nothing here needs a Docker engine or a cluster: YAML is parsed, Compose's ``${...}`` is
interpolated the way Compose does it, and ``kubectl kustomize`` (a local build, no server) is
used where it is installed.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "COMPOSE",
    "COMPOSE_DIR",
    "ENV_EXAMPLE",
    "K8S_DIR",
    "ROOT",
    "SERVICES",
    "compose",
    "compose_variables",
    "env_example",
    "interpolate",
    "k8s_objects",
    "kustomize",
    "pod_specs",
    "read_yaml",
]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
K8S_DIR = ROOT / "deploy" / "k8s"
# The five services (services/<name>), each run as `python -m featurebus.<name>`.
SERVICES = tuple(sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists()))

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def read_yaml(path: Path) -> list[Any]:
    """Every document of a YAML file (empty documents left out)."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def env_example() -> dict[str, str]:
    """The variables deploy/compose/.env.example lists, with their example values."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def compose_variables() -> set[str]:
    """The names compose.yaml interpolates (``${NAME...}``)."""
    text = COMPOSE.read_text().replace("$$", "")
    return {m["name"] for m in _VARIABLE.finditer(text)}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``value`` with Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``,
    ``${NAME:?error}`` and ``$$`` resolved against ``env``; a missing required one raises."""
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def resolve(m: re.Match[str]) -> str:
        name, op, arg = m["name"], m["op"], m["arg"]
        given = env.get(name)
        unset = given is None or (given == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and unset:
            raise KeyError(f"${{{name}}} is required: {arg}")
        if op in (":-", "-") and unset:
            return arg
        return given or ""

    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(resolve, part) for part in parts)


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml as Compose sees it: YAML merge keys applied; interpolated when ``env`` is given."""
    (doc,) = read_yaml(COMPOSE)
    return doc if env is None else interpolate(doc, env)


def k8s_objects(components: bool = False) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object of deploy/k8s's YAML files (not the kustomizations, not Helm values),
    with the file it is in: the base's, and with ``components`` the optional components' too.
    Parsed once per test session: treat them as read-only."""
    yield from _k8s_objects(components)


@functools.cache
def _k8s_objects(components: bool) -> tuple[tuple[Path, dict[str, Any]], ...]:
    paths = K8S_DIR.rglob("*.yaml") if components else K8S_DIR.glob("*.yaml")
    return tuple(
        (path, doc)
        for path in sorted(paths)
        if path.name != "kustomization.yaml" and not path.name.startswith("values-")
        for doc in read_yaml(path)
    )


@functools.cache
def kubectl() -> str | None:
    return shutil.which("kubectl")


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` builds from ``directory`` (local only, no cluster)."""
    binary = kubectl()
    assert binary is not None
    run = subprocess.run(
        [binary, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert run.returncode == 0, f"kubectl kustomize {directory} failed:\n{run.stderr[-3000:]}"
    return [doc for doc in yaml.safe_load_all(run.stdout) if doc is not None]


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The pod templates of a Deployment or a RayCluster: ``(name, template)``, the template
    holding ``metadata`` and ``spec``."""
    spec = obj.get("spec", {})
    if obj["kind"] == "Deployment":
        yield obj["metadata"]["name"], spec["template"]
    elif obj["kind"] == "RayCluster":
        yield "ray-head", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"ray-worker-{group['groupName']}", group["template"]
