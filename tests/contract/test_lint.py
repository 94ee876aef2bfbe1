"""The code passes its own linters: ruff (rules in pyproject.toml) and mypy (strict on the libraries
and the registry), as `make lint` runs them."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_lint_passes() -> None:
    run = subprocess.run(["make", "-s", "lint"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
