"""`featurebus plugin ...`: the plugin author's loop of init, scan, lint and test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import featurebus.sdk
from featurebus.sdk import console_script
from featurebus.sdk.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plugins" / "text_embed"


def test_scan_accepts_the_example_and_reports_json() -> None:
    result = runner.invoke(app, ["plugin", "scan", str(EXAMPLE), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and report["manifest"]["feature_extractor_name"] == "text_embed"


def test_scan_rejects_with_file_line_and_exit_1(tmp_path: Path) -> None:
    plugin = tmp_path / "bad"
    for file in EXAMPLE.rglob("*.py"):
        target = plugin / file.relative_to(EXAMPLE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(file.read_text())
    core = plugin / "processors" / "core.py"
    core.write_text("import subprocess\n" + core.read_text())
    result = runner.invoke(app, ["plugin", "scan", str(plugin)])
    assert result.exit_code == 1
    assert "processors/core.py:1 [ERROR]" in result.output and "rejected" in result.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["plugin", "scan", str(tmp_path / "missing")]).exit_code == 2
    assert runner.invoke(app, ["plugin", "scan"]).exit_code == 2


def test_lint_reports_sequential_processing(tmp_path: Path) -> None:
    runner.invoke(app, ["plugin", "init", "slow_one", "--directory", str(tmp_path)])
    core = tmp_path / "slow_one" / "processors" / "core.py"
    core.write_text(
        core.read_text().replace(
            '        batch["slow_one_embedding"] = self._model.encode(texts, normalize_embeddings=True).tolist()',
            '        for i, row in batch.iterrows():\n            batch.at[i, "slow_one_embedding"] = self._model.encode(row["data"])',
        )
    )
    result = runner.invoke(app, ["plugin", "lint", str(tmp_path / "slow_one")])
    assert result.exit_code == 1
    assert "processors/core.py:15 [WARNING] row-by-row iteration" in result.output
    assert "model or API call" in result.output


@pytest.mark.slow
def test_init_scaffold_passes_scan_lint_and_test(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plugin", "init", "my_plugin", "--directory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "my_plugin"
    assert runner.invoke(app, ["plugin", "scan", str(root)]).exit_code == 0
    assert runner.invoke(app, ["plugin", "lint", str(root)]).exit_code == 0
    tested = runner.invoke(app, ["plugin", "test", str(root), "--sample", str(root / "sample.json")])
    assert tested.exit_code == 0, tested.output
    assert "2/2 rows embedded" in tested.output and "my_plugin_embedding[384]" in tested.output
    again = runner.invoke(app, ["plugin", "init", "my_plugin", "--directory", str(tmp_path)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_test_command_reports_row_failures_with_hints(tmp_path: Path) -> None:
    runner.invoke(app, ["plugin", "init", "wrong_col", "--directory", str(tmp_path)])
    core = tmp_path / "wrong_col" / "processors" / "core.py"
    core.write_text(
        core.read_text()
        .replace('batch["data"].fillna', 'batch["text"].fillna')
        .replace("if self._model is None:", "if False:")
    )
    sample = tmp_path / "rows.jsonl"
    sample.write_text('{"data": "one"}\n{"data": "two"}\n')
    result = runner.invoke(app, ["plugin", "test", str(tmp_path / "wrong_col"), "--sample", str(sample)])
    assert result.exit_code == 1
    assert "plugin_exception" in result.output and "batch['data']" in result.output
    assert "0/2 rows embedded" in result.output


@pytest.mark.parametrize("missing", ["typer", "httpx", "featurebus.scan", "featurebus.runtime"])
def test_without_the_cli_extra_the_command_names_the_install(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for loaded in ("cli", "client"):  # imported again, without ``missing``; put back afterwards
        monkeypatch.delitem(sys.modules, f"featurebus.sdk.{loaded}")
        monkeypatch.setattr(featurebus.sdk, loaded, getattr(featurebus.sdk, loaded))
    monkeypatch.setitem(sys.modules, missing, None)  # an import of it now fails as if not installed
    with pytest.raises(SystemExit) as exited:
        console_script.main()
    assert str(exited.value) == (
        f"featurebus: the command line needs the SDK's cli extra ({missing} is not installed): "
        "pip install 'featurebus-sdk[cli]'"
    )


def test_any_other_missing_module_is_not_blamed_on_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "featurebus.sdk.cli")
    monkeypatch.setitem(sys.modules, "featurebus.sdk.client", None)
    with pytest.raises(ModuleNotFoundError):
        console_script.main()
