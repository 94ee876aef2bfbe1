"""Dependencies beyond the workers' libraries: the operator's pinned packages, a plugin environment each."""

from __future__ import annotations

from pathlib import Path

import pytest
from scanner_fixtures import QUICKSTART_MANIFEST, QUICKSTART_PIPELINE, archive, quickstart

from featurebus.scan import scan_archive
from featurebus.scan.dependencies import PluginPackages, resolve_dependencies

LISTED = """
[fuzzlib]
version = "2.1.0"
modules = ["fuzzlib"]
requires = ["widthlib", "numpy"]

[widthlib]
version = "0.3.0"
modules = ["widthlib", "widthlib_extra"]

[alone]
version = "1.0.0"
modules = ["alone"]
"""


@pytest.fixture
def packages(tmp_path: Path) -> PluginPackages:
    path = tmp_path / "packages.toml"
    path.write_text(LISTED)
    return PluginPackages.load(path)


def test_a_listed_dependency_gets_its_pin_and_the_pins_of_what_it_needs(packages: PluginPackages) -> None:
    resolution = resolve_dependencies(["torch", "FuzzLib>=2"], packages)
    assert resolution.problems == []
    # numpy is the workers' own: it is not installed again
    assert resolution.environment == ["fuzzlib==2.1.0", "widthlib==0.3.0"]


def test_the_workers_libraries_need_no_environment(packages: PluginPackages) -> None:
    assert resolve_dependencies(["torch", "pillow", "numpy>=1.20"], packages).environment == []


@pytest.mark.parametrize(
    ("dependency", "code", "fix"),
    [
        ("fuzzlib==3.0", "DEP003", "fuzzlib==2.1.0"),  # a version the platform does not pin
        ("fuzzlib[speedups]", "DEP004", '"fuzzlib"'),  # extras would bring unlisted packages
        ("fuzzlib @ https://example.com/fuzzlib.whl", "DEP004", '"fuzzlib"'),
        ("leftpad-ml", "DEP002", "packages.toml"),  # neither the workers' nor listed: the file to add it to
    ],
)
def test_a_dependency_the_platform_cannot_pin_names_itself_and_the_fix(
    packages: PluginPackages, dependency: str, code: str, fix: str
) -> None:
    [(found, message, hint)] = resolve_dependencies([dependency], packages).problems
    assert found == code and dependency.split("[")[0].split(" ")[0].split("=")[0] in message
    assert fix in hint


def test_a_dependency_for_another_platform_is_ignored(packages: PluginPackages) -> None:
    resolution = resolve_dependencies(["pywin32==306; sys_platform == 'win32'"], packages)
    assert resolution.problems == [] and resolution.environment == []


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('[a]\nmodules = ["a"]\n', "version"),
        ('[a]\nversion = "one"\n', "not a version"),
        ('[a]\nversion = "1.0"\nrequires = ["b"]\n', "[b]"),
        ('[numpy]\nversion = "1.0"\n', "workers' own"),
        ('[a]\nversion = "1.0"\nmodules = ["a-b"]\n', "modules"),
        ("[a\n", "TOML"),
    ],
)
def test_a_malformed_list_names_the_file_the_package_and_the_fix(tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.toml") as raised:
        PluginPackages.load(path)
    assert names in str(raised.value)


def test_featurebus_ships_a_list_whose_packages_are_all_pinned() -> None:
    shipped = PluginPackages.load()
    assert shipped.packages and all(p.version and p.modules for p in shipped.packages.values())
    assert {"wcwidth"} <= {n for p in shipped.packages.values() for n in p.requires}


FUZZ_CORE = """
import fuzzlib
from widthlib_extra import measure

class MyConfig:
    def __init__(self, threshold=0.5, model_size="base"):
        self.threshold = threshold

class MyProcessor:
    def __init__(self, config, progress_logger=None):
        self.config = config

    def __call__(self, batch):
        batch["score"] = [fuzzlib.ratio(t, t) + measure(t) for t in batch["text"]]
        return batch
"""


def test_a_plugin_imports_its_environments_packages_and_the_scan_carries_the_pins(packages: PluginPackages) -> None:
    manifest = QUICKSTART_MANIFEST + '\ndependencies = ["fuzzlib"]\n'
    files = quickstart(**{"manifest.py": manifest, "processors/core.py": FUZZ_CORE})
    report = scan_archive(archive(files), packages=packages)
    assert report.passed, report.lines()
    assert report.manifest is not None and report.manifest.environment == ["fuzzlib==2.1.0", "widthlib==0.3.0"]


def test_importing_a_listed_package_without_depending_on_it_says_to_list_it(packages: PluginPackages) -> None:
    files = quickstart(**{"processors/core.py": FUZZ_CORE})
    report = scan_archive(archive(files), packages=packages)
    assert not report.passed
    refused = [v for v in report.violations if v.code == "SEC001"]
    assert refused and 'list "fuzzlib" in the manifest\'s dependencies' in (refused[0].hint or "")


def test_an_unlisted_import_is_still_refused_with_a_dependency(packages: PluginPackages) -> None:
    manifest = QUICKSTART_MANIFEST + '\ndependencies = ["alone"]\n'
    core = FUZZ_CORE.replace("import fuzzlib\n", "import alone\nimport fuzzlib\n")
    report = scan_archive(
        archive(quickstart(**{"manifest.py": manifest, "processors/core.py": core})), packages=packages
    )
    refused = " ".join(v.message for v in report.violations if v.code == "SEC001")
    assert "import of 'fuzzlib'" in refused and "import from 'widthlib_extra'" in refused
    assert "alone" not in refused


def test_the_guides_pipeline_still_passes_with_the_shipped_list() -> None:
    report = scan_archive(archive({"manifest.py": QUICKSTART_MANIFEST, "pipeline.py": QUICKSTART_PIPELINE}))
    assert report.passed and report.manifest is not None and report.manifest.environment == []
