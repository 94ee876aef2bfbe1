"""What the project ships to plugin authors scans clean: every example plugin and the CLI's scaffold.

Zipped as the CLI uploads them (``zip_directory``), scanned as the scanner service scans them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from featurebus.scan import scan_archive, zip_directory

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "plugins"
EXAMPLE_DIRS = sorted(p for p in EXAMPLES.iterdir() if (p / "manifest.py").is_file())


def errors_of(path: Path) -> list[str]:
    report = scan_archive(zip_directory(path), expected_name=path.name)
    assert report.manifest is not None, report.lines()
    return [line for line in report.lines() if "[ERROR]" in line]


def test_the_repository_ships_example_plugins() -> None:
    assert len(EXAMPLE_DIRS) >= 3, EXAMPLE_DIRS


@pytest.mark.parametrize("path", EXAMPLE_DIRS, ids=[p.name for p in EXAMPLE_DIRS])
def test_example_plugin_scans_clean(path: Path) -> None:
    assert errors_of(path) == []


def test_cli_scaffold_scans_clean(tmp_path: Path) -> None:
    cli = pytest.importorskip("featurebus.sdk.cli")  # the SDK depends on the scanner, not the reverse
    from typer.testing import CliRunner

    result = CliRunner().invoke(cli.app, ["plugin", "init", "my_scaffold", "--directory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert errors_of(tmp_path / "my_scaffold") == []
