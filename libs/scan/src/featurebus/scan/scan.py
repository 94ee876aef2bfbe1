"""The whole scan of one archive: archive checks, manifest, security scan of every .py file."""

from __future__ import annotations

import ast
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from featurebus.common.events import PluginManifest, Violation
from featurebus.scan.archive_checks import Limits, read_archive
from featurebus.scan.batch_lint import lint_tree
from featurebus.scan.dependencies import PluginPackages
from featurebus.scan.manifest_reader import read_manifest
from featurebus.scan.name_flow import PluginProgram
from featurebus.scan.references import model_references, secret_references, step_resource_types
from featurebus.scan.security_scan import ScanOptions, parse_source, scan_program

__all__ = ["MAX_SOURCE_TOTAL", "ScanReport", "scan_archive", "zip_directory"]

# All .py files together: parsing is linear but an AST takes ~10x its source in memory, so 500 MB of
# "source" would exhaust the scanner. A plugin with vendored helpers is well below this.
MAX_SOURCE_TOTAL = 16 * 1024 * 1024

# Produced by running a plugin locally; never part of what gets uploaded.
SKIPPED_WHEN_ZIPPING = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".git", "tests"}


@dataclass
class ScanReport:
    violations: list[Violation] = field(default_factory=list)
    manifest: PluginManifest | None = None

    @property
    def passed(self) -> bool:
        return self.manifest is not None and not any(v.severity == "ERROR" for v in self.violations)

    def lines(self) -> list[str]:
        """``filename:line [SEVERITY] message`` for each violation."""
        return [str(v) for v in self.violations]


def scan_archive(
    data: bytes,
    *,
    expected_name: str | None = None,
    expected_version: str | None = None,
    limits: Limits | None = None,
    strict: bool = False,
    packages: PluginPackages | None = None,
) -> ScanReport:
    """``packages``: the operator's installable packages (featurebus's own list when None)."""
    packages = packages if packages is not None else PluginPackages.load()
    archive = read_archive(data, limits or Limits())
    report = ScanReport(list(archive.violations))
    if "manifest.py" in archive.files:
        report.manifest, found = read_manifest(
            archive.files["manifest.py"].decode("utf-8", errors="replace"),
            has_realtime="realtime.py" in archive.files,
            expected_name=expected_name,
            expected_version=expected_version,
            packages=packages,
        )
        report.violations.extend(found)
    own = frozenset(PurePosixPath(name).parts[0].removesuffix(".py") for name in archive.files)
    environment = report.manifest.environment if report.manifest is not None else []
    options = ScanOptions(
        strict=strict, own_modules=own, environment_modules=packages.modules_of(environment), packages=packages
    )
    trees: dict[str, ast.Module] = {}
    total = sum(len(body) for name, body in archive.files.items() if name.endswith(".py"))
    if total > MAX_SOURCE_TOTAL:
        report.violations.append(
            Violation(
                filename="<archive>",
                code="SEC000",
                message=f"the plugin's Python source totals {total / 2**20:.0f} MB; the scanner reads at most "
                f"{MAX_SOURCE_TOTAL // 2**20} MB",
                hint="keep libraries out of the archive: list them in the manifest's dependencies",
            )
        )
        return report
    for name, body in sorted(archive.files.items()):
        if name.endswith(".py"):
            tree = parse_source(name, body)
            if isinstance(tree, Violation):
                report.violations.append(tree)
            else:
                trees[name] = tree
    # One program: an alias made in one module (`o = os`) is followed where another imports it.
    by_file = scan_program(PluginProgram(trees, own), options)
    for name, tree in trees.items():
        report.violations.extend(by_file[name])
        report.violations.extend(lint_tree(name, tree))
    if report.manifest is not None:
        hub, namespace = model_references(trees)
        steps = step_resource_types(trees)
        profile = report.manifest.compute_profile
        report.violations.extend(_step_resources_notes(profile.resource_type, steps))
        report.manifest = report.manifest.model_copy(
            update={
                "compute_profile": profile.model_copy(update={"step_resource_types": steps}),
                "models": sorted({*report.manifest.models, *hub}),
                "namespace_models": sorted({*report.manifest.namespace_models, *namespace}),
                "secrets": sorted({*report.manifest.secrets, *secret_references(trees)}),
            }
        )
    return report


def _step_resources_notes(profile: str, steps: list[str]) -> list[Violation]:
    """What a step's ResourceType adds to compute_profile's: the workers get it (an INFO note)."""
    adds = {
        "gpu": "a GPU where the cluster has one (where it has none, the step runs on CPU)",
        "api": "outbound network (where the operator allows it: FEATUREBUS_SANDBOX_EGRESS)",
    }
    return [
        Violation(
            filename="manifest.py",
            severity="INFO",
            code="MAN050",
            message=f"a step runs on ResourceType.{kind.upper()} while compute_profile.resource_type is "
            f"{profile!r}: the plugin's workers get {adds[kind]}",
            hint=f'set compute_profile resource_type = "{kind}" to say so in the manifest',
        )
        for kind in steps
        if kind in adds and kind != profile
    ]


def zip_directory(path: Path) -> bytes:
    """Zip a plugin directory as ``zip -r name.zip name/`` would, leaving out caches and tests."""
    buffer = io.BytesIO()
    root = path.resolve()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(root.rglob("*")):
            rel = file.relative_to(root)
            if file.is_dir() or file.is_symlink() or SKIPPED_WHEN_ZIPPING & set(rel.parts):
                continue
            zf.write(file, f"{root.name}/{rel.as_posix()}")
    return buffer.getvalue()
