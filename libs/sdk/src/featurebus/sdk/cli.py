"""``featurebus``: the plugin author's command line.

    featurebus plugin scan PATH [--strict] [--json]     exit 0 accepted, 1 rejected, 2 usage error
    featurebus plugin lint PATH                         the guide's SEQ001-SEQ003 batch linter
    featurebus plugin init NAME                         a scaffold that passes scan, lint and test
    featurebus plugin test PATH --sample FILE           run build_steps and the steps on sample rows
    featurebus plugin publish PATH                      upload, confirm, wait for the scan, deploy

PATH is a plugin directory or a zip. The scan is the same checker the scanner service runs; the
test runs the plugin in the platform's own host (:mod:`featurebus.runtime`). Its packages come
with ``pip install 'featurebus-sdk[cli]'`` (see :mod:`featurebus.sdk.console_script`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import typer

from featurebus.common.events import Violation
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.runtime import PluginError, PluginHost, unpack_archive
from featurebus.scan import lint_source, scan_archive, zip_directory
from featurebus.sdk.client import ApiError, Client
from featurebus.sdk.model_loading import offline_env, seed_offline_models

__all__ = ["app"]

app = typer.Typer(help="featurebus command line.", no_args_is_help=True)
plugin = typer.Typer(help="Build, check, test and publish feature-extractor plugins.", no_args_is_help=True)
app.add_typer(plugin, name="plugin")

PathArg = typer.Argument(..., exists=True, help="a plugin directory or a .zip archive")


def _archive(path: Path) -> bytes:
    return zip_directory(path) if path.is_dir() else path.read_bytes()


def _print(violations: list[Violation]) -> None:
    for v in violations:
        typer.echo(str(v) + (f"\n    hint: {v.hint}" if v.hint else ""))


@plugin.command()
def scan(
    path: Path = PathArg,
    strict: bool = typer.Option(False, "--strict", help="also reject grey cases, e.g. unpinned hub downloads"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Scan a plugin exactly as the scanner service does. Exit 0 when accepted, 1 when rejected."""
    report = scan_archive(_archive(path), strict=strict)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "passed": report.passed,
                    "violations": [v.model_dump() for v in report.violations],
                    "manifest": report.manifest.model_dump() if report.manifest else None,
                },
                indent=2,
            )
        )
    else:
        _print(report.violations)
        errors = sum(v.severity == "ERROR" for v in report.violations)
        typer.echo(
            f"{'accepted' if report.passed else 'rejected'}: {errors} error(s), "
            f"{len(report.violations) - errors} warning(s)"
        )
    raise typer.Exit(0 if report.passed else 1)


@plugin.command()
def lint(path: Path = PathArg) -> None:
    """Warn about sequential batch processing (SEQ001-SEQ003). Exit 1 when anything is found."""
    with tempfile.TemporaryDirectory() as tmp:
        root = unpack_archive(_archive(path), Path(tmp))
        found = [
            v for f in sorted(root.rglob("*.py")) for v in lint_source(f.relative_to(root).as_posix(), f.read_bytes())
        ]
    _print(found)
    typer.echo(f"{len(found)} finding(s)")
    raise typer.Exit(1 if found else 0)


def _sample_frame(sample: Path) -> pd.DataFrame:
    """A JSON list (or JSON lines) of strings or of objects with at least ``data``."""
    text = sample.read_text()
    try:
        rows: list[Any] = json.loads(text)
    except json.JSONDecodeError:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    if not isinstance(rows, list) or not rows:
        raise typer.BadParameter("the sample must be a non-empty JSON list or JSON lines", param_hint="--sample")
    frame = []
    for i, row in enumerate(rows):
        row = {"data": row} if isinstance(row, str) else dict(row)
        if "data" not in row:
            raise typer.BadParameter(f"row {i} has no 'data' field", param_hint="--sample")
        base = {c: f"{c}_{i}" for c, kind in FRAME_COLUMNS.items() if kind == "str"}
        frame.append({**base, "blob_type": "text", "mime_type": "text/plain", "size_bytes": 0, **row})
    return pd.DataFrame(frame)


@plugin.command()
def test(
    path: Path = PathArg,
    sample: Path = typer.Option(..., exists=True, help="JSON list or JSON lines of texts or rows with 'data'"),
    params: str = typer.Option("{}", help="plugin parameters as JSON"),
) -> None:
    """Run build_steps and the steps on sample rows here; check columns, dimensions and row count."""
    frame = _sample_frame(sample)
    # A persistent offline model cache (symlinks to weights in installed packages): Hugging Face
    # libraries read HF_HOME once, so it must outlive this command.
    models = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "featurebus" / "models"
    seed_offline_models(models)
    for key, value in offline_env(models).items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            host = PluginHost.load(
                unpack_archive(_archive(path), Path(tmp) / "plugin"), plugin_id="local", parameters=json.loads(params)
            )
        except PluginError as err:
            typer.echo(f"load failed: {err.message}")
            raise typer.Exit(1) from None
        began = time.perf_counter()
        result = host.run(frame)
        elapsed = time.perf_counter() - began
    problems = [
        f"{f.document_id}: {f.reason.value}: {f.message}" + (f" (hint: {f.hint})" if f.hint else "")
        for f in result.failures
    ]
    for feature in host.features:
        for i, vector in enumerate(result.vectors.get(feature.feature_name, [])):
            if len(vector) != feature.embedding_dim:
                problems.append(
                    f"row {i}: {feature.feature_name} has {len(vector)} dimensions, "
                    f"the manifest says {feature.embedding_dim}"
                )
    for line in problems:
        typer.echo(line)
    typer.echo(
        f"{result.rows_embedded}/{result.rows_in} rows embedded in {elapsed:.2f}s; "
        f"features: {', '.join(f'{f.feature_name}[{f.embedding_dim}]' for f in host.features)}"
    )
    raise typer.Exit(1 if problems else 0)


@plugin.command()
def publish(
    path: Path = PathArg,
    namespace: str = typer.Option(..., envvar="FEATUREBUS_NAMESPACE", help="namespace id or name"),
    url: str = typer.Option("http://127.0.0.1:8000", envvar="FEATUREBUS_URL"),
    key: str = typer.Option(..., envvar="FEATUREBUS_API_KEY", help="API key (Bearer)"),
    timeout: float = typer.Option(300, help="seconds to wait for the scan"),
) -> None:
    """Scan locally, upload, confirm, wait for the platform's scan, and deploy for batch processing."""
    data = _archive(path)
    local = scan_archive(data)
    if not local.passed or local.manifest is None:
        _print(local.violations)
        typer.echo("rejected by the local scan; nothing was uploaded")
        raise typer.Exit(1)
    name, version = local.manifest.feature_extractor_name, local.manifest.version
    typer.echo(f"uploading {name} {version} ({len(data)} bytes)")
    try:
        with Client(url, key) as fb:
            plugin_id = fb.upload_plugin(namespace, data, name, version)["plugin_id"]
            typer.echo(f"confirmed {plugin_id}; waiting for the scan", nl=False)
            status = fb.wait_for_scan(namespace, plugin_id, timeout, on_wait=lambda: typer.echo(".", nl=False))
            typer.echo(f" {status['scan']['status']}")
            if status["scan"]["status"] != "passed":
                _print([Violation.model_validate(v) for v in status["scan"]["violations"]])
                raise typer.Exit(1)
            deployed = fb.deploy_for_batch(namespace, plugin_id)
    except ApiError as err:
        typer.echo(
            f"\n{err.method} {err.path}: {err.status} {err.detail}" + (f"\n    hint: {err.hint}" if err.hint else "")
        )
        raise typer.Exit(1) from None
    except TimeoutError as err:
        typer.echo(f"\n{err}; check the scanner service")
        raise typer.Exit(1) from None
    typer.echo(f"{plugin_id} deployed for batch processing (status {deployed['status']})")


@plugin.command()
def init(name: str, directory: Path = typer.Option(Path("."), help="where to create the plugin")) -> None:
    """Create a plugin scaffold (text embeddings with all-MiniLM-L6-v2) that passes scan, lint and test."""
    if not name.isidentifier() or not name.islower():
        raise typer.BadParameter(
            "use lowercase letters, digits and underscores, starting with a letter", param_hint="NAME"
        )
    root = directory / name
    if root.exists():
        raise typer.BadParameter(f"{root} already exists", param_hint="NAME")
    for rel, text in _scaffold(name).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    typer.echo(
        f"created {root}\nnext: featurebus plugin scan {root} && featurebus plugin test {root} "
        f"--sample {root}/sample.json"
    )


def _scaffold(name: str) -> dict[str, str]:
    feature = f"{name}_embedding"
    return {
        "manifest.py": f'''feature_extractor_name = "{name}"
version = "0.1.0"
description = "Text embeddings with all-MiniLM-L6-v2"
supported_input_types = ["text"]
features = [
    {{
        "feature_type": "embedding",
        "feature_name": "{feature}",
        "embedding_dim": 384,
        "distance_metric": "cosine",
    }},
]
compute_profile = {{"resource_type": "cpu", "batch_size": 64, "max_concurrency": 1}}
''',
        "pipeline.py": f'''from engine.plugins.extractors.pipeline import (
    PipelineDefinition,
    ResourceType,
    StepDefinition,
    build_pipeline_steps,
)

from .processors.core import Embedder


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    params = extractor_request.extractor_config.parameters or {{}}
    step = StepDefinition(service_class=Embedder, resource_type=ResourceType.CPU, config=params)
    return {{"steps": build_pipeline_steps(PipelineDefinition(name="{name}", version="0.1.0", steps=[step]))}}
''',
        "processors/__init__.py": "",
        "processors/core.py": f'''import pandas as pd


class Embedder:
    def __init__(self, config=None, **kwargs):
        self.config = config or {{}}
        self._model = None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer("all-MiniLM-L6-v2", device="cpu")
        texts = batch["data"].fillna("").tolist()  # always the 'data' column
        batch["{feature}"] = self._model.encode(texts, normalize_embeddings=True).tolist()
        return batch
''',
        "sample.json": json.dumps(["a first sample text", "another one"]) + "\n",
    }
