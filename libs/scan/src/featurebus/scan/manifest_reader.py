"""Read ``manifest.py`` statically (``ast`` + ``literal_eval``): the plugin's code never runs here.

Both styles of the guide are read: module-level values (``feature_extractor_name``, ``version``,
``features``, ...) or a ``metadata`` dict beside module-level ``features`` and pydantic schema
classes. The guide's silent failures become errors that name the fix.
"""

from __future__ import annotations

import ast
from typing import Any

from pydantic import ValidationError

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginManifest, Violation
from featurebus.common.ids import normalize_version
from featurebus.scan.dependencies import PluginPackages, resolve_dependencies
from featurebus.scan.references import SECRET_NAME

__all__ = ["read_manifest"]

FEATURE_KEYS = ("feature_type", "feature_name", "embedding_dim", "distance_metric")
WRONG_FEATURE_KEYS = {
    "type": "feature_type",
    "name": "feature_name",
    "dimensions": "embedding_dim",
    "dim": "embedding_dim",
    "dimension": "embedding_dim",
    "distance": "distance_metric",
    "metric": "distance_metric",
}
_NOT_LITERAL = object()
FILE = "manifest.py"


def _err(code: str, line: int, message: str, hint: str | None = None, severity: str = "ERROR") -> Violation:
    return Violation(filename=FILE, line=line, severity=severity, code=code, message=message, hint=hint)  # type: ignore[arg-type]


def _assignments(tree: ast.Module) -> dict[str, tuple[Any, int]]:
    """Module-level ``name = <value>``: the literal value (or _NOT_LITERAL) and its line."""
    values: dict[str, tuple[Any, int]] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                try:
                    values[target.id] = (ast.literal_eval(value), node.lineno)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    values[target.id] = (_NOT_LITERAL, node.lineno)
    return values


def read_manifest(
    source: str,
    *,
    has_realtime: bool,
    expected_name: str | None = None,
    expected_version: str | None = None,
    packages: PluginPackages | None = None,
) -> tuple[PluginManifest | None, list[Violation]]:
    """The manifest, or None with the violations that name why; ``packages`` is the operator's list
    of packages a plugin's own environment may have (featurebus's own list when None)."""
    violations: list[Violation] = []
    try:
        tree = ast.parse(source, filename=FILE)
    except SyntaxError as exc:
        return None, [_err("MAN000", exc.lineno or 0, f"manifest.py cannot be parsed: {exc.msg}")]
    values = _assignments(tree)
    metadata, _ = values.get("metadata", ({}, 0))
    metadata = metadata if isinstance(metadata, dict) else {}

    def get(key: str) -> tuple[Any, int]:
        if key in values:
            return values[key]
        return (metadata[key], values.get("metadata", (None, 0))[1]) if key in metadata else (None, 0)

    name, line = get("feature_extractor_name")
    if not isinstance(name, str) or not name:
        violations.append(_err("MAN001", line, "feature_extractor_name is missing or not a string constant"))
        name = ""
    raw_version, vline = get("version")
    version = ""
    try:
        version = normalize_version(str(raw_version)) if raw_version is not None else ""
        if not version:
            violations.append(_err("MAN002", vline, 'version is missing: set version = "1.0.0"'))
    except ValueError as exc:
        violations.append(_err("MAN002", vline, str(exc)))
    if expected_name and name and name != expected_name:
        violations.append(
            _err(
                "MAN003",
                line,
                f"manifest says feature_extractor_name={name!r} but it was uploaded as {expected_name!r}",
                "upload with the manifest's name, or change the manifest",
            )
        )
    if expected_version and version and normalize_version(expected_version) != version:
        violations.append(
            _err(
                "MAN003",
                vline,
                f"manifest says version {version} but it was uploaded as {expected_version}",
                "upload with the manifest's version, or change the manifest",
            )
        )

    features = _features(values, violations)
    profile = _compute_profile(values, violations)
    feature_uri, uline = get("feature_uri")
    if feature_uri is not None and not has_realtime:
        violations.append(
            _err(
                "MAN020",
                uline,
                "feature_uri is set but the archive has no realtime.py: retriever queries against that URI would fail",
                "add realtime.py, or remove feature_uri (featurebus then embeds queries through the batch steps)",
                severity="WARNING",
            )
        )
    output_schema, _ = get("output_schema")
    supported, _ = get("supported_input_types")
    description, _ = get("description")
    category, _ = get("category")
    models = _names(get, "models", violations)
    namespace_models = _names(get, "namespace_models", violations)
    secrets = _secret_names(get, violations)
    environment = _dependencies(get, packages, violations)
    if any(v.severity == "ERROR" for v in violations):
        return None, violations
    manifest = PluginManifest(
        feature_extractor_name=name,
        version=version,
        description=description if isinstance(description, str) else "",
        category=category if isinstance(category, str) else None,
        features=features,
        compute_profile=profile,
        feature_uri=feature_uri if isinstance(feature_uri, str) else None,
        supported_input_types=list(supported) if isinstance(supported, list | tuple) else [],
        has_realtime=has_realtime,
        output_schema=output_schema if isinstance(output_schema, dict) else None,
        models=models,
        namespace_models=namespace_models,
        secrets=secrets,
        environment=environment,
    )
    return manifest, violations


def _names(get: Any, key: str, violations: list[Violation]) -> list[str]:
    """``models`` / ``namespace_models``: the models a plugin loads by names its code computes."""
    raw, line = get(key)
    if raw is None:
        return []
    if not (isinstance(raw, list | tuple) and all(isinstance(v, str) and v for v in raw)):
        violations.append(
            _err("MAN040", line, f"{key} must be a list of model names (string constants)", f'{key} = ["owner/model"]')
        )
        return []
    return sorted(set(raw))


def _dependencies(get: Any, packages: PluginPackages | None, violations: list[Violation]) -> list[str]:
    """``dependencies``: each one a library workers run plugins with, at the version they have, or
    a package of the plugin's own environment (whose pins are returned)."""
    raw, line = get("dependencies")
    if raw is None:
        return []
    if not (isinstance(raw, list | tuple) and all(isinstance(v, str) for v in raw)):
        violations.append(
            _err(
                "MAN042",
                line,
                "dependencies must be a list of requirement strings",
                'dependencies = ["torch", "pillow"]',
            )
        )
        return []
    resolution = resolve_dependencies(list(raw), packages)
    violations.extend(_err(code, line, message, hint) for code, message, hint in resolution.problems)
    return resolution.environment


def _secret_names(get: Any, violations: list[Violation]) -> list[str]:
    """``secrets``: the organization secrets the plugin reads by names its code computes."""
    raw, line = get("secrets")
    if raw is None:
        return []
    if not (isinstance(raw, list | tuple) and all(isinstance(v, str) and SECRET_NAME.fullmatch(v) for v in raw)):
        violations.append(
            _err(
                "MAN041",
                line,
                "secrets must be a list of secret names (string constants of letters, digits and _)",
                'secrets = ["OPENAI_API_KEY"]',
            )
        )
        return []
    return sorted(set(raw))


def _features(values: dict[str, tuple[Any, int]], violations: list[Violation]) -> list[FeatureSpec]:
    raw, line = values.get("features", (None, 0))
    if raw is None:
        violations.append(
            _err(
                "MAN010",
                0,
                "manifest.py has no features list: the collection would get no vector indexes and index 0 documents",
                'add features = [{"feature_type": "embedding", '
                '"feature_name": ..., "embedding_dim": ..., "distance_metric": "cosine"}]',
            )
        )
        return []
    if raw is _NOT_LITERAL or not isinstance(raw, list | tuple):
        violations.append(
            _err("MAN011", line, "features must be a literal list of dicts (the scanner does not run code)")
        )
        return []
    if not raw:
        violations.append(
            _err("MAN010", line, "features is empty: the collection would get no vector indexes and index 0 documents")
        )
    specs: list[FeatureSpec] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            violations.append(_err("MAN012", line, f"features[{i}] must be a dict with keys {list(FEATURE_KEYS)}"))
            continue
        bad = False
        for key in entry:
            if key in FEATURE_KEYS:
                continue
            bad = True
            if key in WRONG_FEATURE_KEYS:
                violations.append(
                    _err(
                        "MAN013",
                        line,
                        f"features[{i}]: key {key!r} is not recognised: use {WRONG_FEATURE_KEYS[key]!r}",
                        "the exact keys are feature_type, feature_name, embedding_dim, distance_metric",
                    )
                )
            else:
                violations.append(
                    _err(
                        "MAN014",
                        line,
                        f"features[{i}]: unknown key {key!r}; the accepted keys are {list(FEATURE_KEYS)}",
                    )
                )
        missing = [k for k in FEATURE_KEYS if k not in entry]
        if missing and not bad:
            violations.append(_err("MAN015", line, f"features[{i}] lacks {missing}"))
        if bad or missing:
            continue
        try:
            spec = FeatureSpec.model_validate(entry, strict=True)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                violations.append(
                    _err(
                        "MAN016",
                        line,
                        f"features[{i}].{field}: {error['msg']} (got {error.get('input')!r})",
                        "embedding_dim is a positive integer; distance_metric is cosine, euclid or dot",
                    )
                )
            continue
        if spec.feature_name in names:
            violations.append(
                _err("MAN017", line, f"features[{i}]: feature_name {spec.feature_name!r} is declared twice")
            )
            continue
        names.add(spec.feature_name)
        specs.append(spec)
    return specs


def _compute_profile(values: dict[str, tuple[Any, int]], violations: list[Violation]) -> ComputeProfile:
    raw, line = values.get("compute_profile", ({}, 0))
    if raw is _NOT_LITERAL or not isinstance(raw, dict):
        violations.append(_err("MAN030", line, "compute_profile must be a literal dict"))
        return ComputeProfile()
    unknown = sorted(set(raw) - set(ComputeProfile.model_fields))
    if unknown:
        violations.append(
            _err(
                "MAN031",
                line,
                f"compute_profile: unknown keys {unknown}; accepted: {sorted(ComputeProfile.model_fields)}",
            )
        )
        return ComputeProfile()
    try:
        return ComputeProfile.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            violations.append(
                _err("MAN032", line, f"compute_profile.{'.'.join(map(str, error['loc']))}: {error['msg']}")
            )
        return ComputeProfile()
