"""The checked-in AsyncAPI document and topic table are what the services declare today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_asyncapi_and_topic_table_are_current() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "asyncapi.py"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr  # a changed topic, payload or handler: run `make docs`


def test_every_topic_has_a_producer_and_a_consumer() -> None:
    table = (ROOT / "docs" / "topics.md").read_text().splitlines()
    rows = [line.split("|")[1:-1] for line in table if line.startswith("| `")]
    assert len(rows) >= 13
    assert all(made.strip() and used.strip() not in ("", "-") for _, _, made, used in rows), rows
