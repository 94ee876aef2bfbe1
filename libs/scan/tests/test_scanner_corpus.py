"""The scanner against its corpus: every evasion is rejected, every legitimate plugin passes."""

from __future__ import annotations

import pytest
from evasion_corpus import ARCHIVE_EVASIONS, EVASIONS, NAMED_EVASIONS
from legit_corpus import LEGIT
from scanner_fixtures import archive, quickstart

from featurebus.scan import scan_archive


@pytest.mark.parametrize(("family", "source"), EVASIONS, ids=[f"{i:02d}-{f}" for i, (f, _) in enumerate(EVASIONS)])
def test_evasion_is_rejected(family: str, source: str) -> None:
    report = scan_archive(archive(quickstart(**{"processors/core.py": source})))
    assert not report.passed, f"{family} evasion passed:\n{source}"
    flagged = [v for v in report.violations if v.severity == "ERROR" and v.filename == "processors/core.py"]
    assert flagged, report.lines()


@pytest.mark.parametrize(
    ("family", "source", "named"), NAMED_EVASIONS, ids=[f"{i:03d}-{f}" for i, (f, _, _) in enumerate(NAMED_EVASIONS)]
)
def test_evasion_is_refused_by_name_with_a_fix(family: str, source: str, named: str) -> None:
    report = scan_archive(archive(quickstart(**{"processors/core.py": source})))
    flagged = [v for v in report.violations if v.severity == "ERROR" and v.filename == "processors/core.py"]
    assert any(named in v.message for v in flagged), f"{family}: nothing names {named!r}: {report.lines()}"
    assert all(v.hint and v.line >= 1 for v in flagged if named in v.message), report.lines()


@pytest.mark.parametrize(("family", "files"), ARCHIVE_EVASIONS, ids=[next(iter(f)) for _, f in ARCHIVE_EVASIONS])
def test_archive_evasion_is_rejected(family: str, files: dict[str, str | bytes]) -> None:
    report = scan_archive(archive({**quickstart(), **files}))
    assert not report.passed
    assert any(v.filename == next(iter(files)) for v in report.violations), report.lines()


@pytest.mark.parametrize(("name", "files"), LEGIT, ids=[n for n, _ in LEGIT])
def test_legitimate_plugin_passes(name: str, files: dict[str, str]) -> None:
    report = scan_archive(archive(files))
    errors = [line for line in report.lines() if "[ERROR]" in line]
    assert report.passed and not errors, errors


def test_corpus_sizes() -> None:
    assert len(EVASIONS) + len(ARCHIVE_EVASIONS) >= 60 and len(LEGIT) >= 25
    assert len(NAMED_EVASIONS) >= 100 and {f for f, _, _ in NAMED_EVASIONS} >= {
        "native",
        "process",
        "files",
        "links",
        "listing",
        "alias",
        "reflection",
        "patch",
    }
