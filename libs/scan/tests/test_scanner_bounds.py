"""The scan is bounded: crafted input is rejected quickly, never hangs, crashes or exhausts memory."""

from __future__ import annotations

import time

import pytest
from legit_corpus import LEGIT
from scanner_fixtures import archive, quickstart

from featurebus.scan import scan_archive
from featurebus.scan.scan import MAX_SOURCE_TOTAL


def scan_core(source: str) -> tuple[list[str], float]:
    started = time.perf_counter()
    report = scan_archive(archive(quickstart(**{"processors/core.py": source})))
    elapsed = time.perf_counter() - started
    return [f"{v.code} {v.message}" for v in report.violations if v.severity == "ERROR"], elapsed


PATHOLOGICAL = {
    # value() recurses on expressions: nesting is refused before any analysis
    "call chain": "def f():\n    return f\nx = f" + "()" * 700,
    "attribute chain": "import os\nx = os" + ".a" * 900,
    "subscript chain": "x = [1]\ny = x" + "[0]" * 900,
    "nested lists": "x = " + "[" * 190 + "1" + "]" * 190,
    "conditional chain": "x = " + " if c else ".join(["a"] * 500),
    "string annotation": "def f(x: '" + "f(" * 150 + "1" + ")" * 150 + "'):\n    pass",
    # aliases that grow without end (os.a0.a1.a0.a1...) or need more rounds than the solver has
    "exponential aliases": "import os\nx = os\n" + "\n".join(f"x = x.a{i}" for i in range(12)),
    "alias chain in reverse": "\n".join(f"a{i} = a{i + 1}" for i in range(3000)) + "\nimport os\na3000 = os",
    "wide container": "import os\nx = [os]\n" + "\n".join(f"x = [x, os.a{i}]" for i in range(600)),
}


@pytest.mark.parametrize("source", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_pathological_source_is_rejected_quickly(source: str) -> None:
    errors, elapsed = scan_core(source)
    assert elapsed < 3, f"took {elapsed:.1f} s"
    assert any(e.startswith(("SEC000", "SEC003", "SEC010")) for e in errors), errors


def test_a_long_but_ordinary_module_passes_in_bounded_time() -> None:
    source = "\n".join(f"def f{i}(x, y={i}):\n    return [x, y, f{i - 1}] if x else None" for i in range(1, 3000))
    errors, elapsed = scan_core("f0 = None\n" + source)
    assert not errors and elapsed < 5


def test_total_source_is_capped_before_parsing() -> None:
    chunk = "x = 1\n" * (MAX_SOURCE_TOTAL // 6 // 10)
    files = quickstart(**{f"processors/m{i}.py": chunk for i in range(12)})
    started = time.perf_counter()
    report = scan_archive(archive(files))
    assert time.perf_counter() - started < 5
    assert any(v.code == "SEC000" and "MB" in v.message for v in report.violations), report.lines()


def test_every_legitimate_plugin_scans_well_under_a_second() -> None:
    slowest = 0.0
    for _, files in LEGIT:
        started = time.perf_counter()
        scan_archive(archive(files))
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.5, f"slowest legitimate plugin took {slowest:.2f} s"
