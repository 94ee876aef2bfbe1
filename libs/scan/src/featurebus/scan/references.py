"""The models and secrets a plugin's code names, read statically: what its workers are given.

A plugin loads a Hugging Face model by naming it — ``SentenceTransformer("all-MiniLM-L6-v2")``,
``AutoModel.from_pretrained(MODEL_ID)``, ``load_hf_model(hf_model_id=...)``, a ``LazyModelMixin``
subclass's ``model_id``, ``@lazy_model(model_id=...)`` — and its own weights with
``load_namespace_model("name")``. Names are string constants at the call, or module-level string
constants the call refers to; anything computed at run time is not seen here (the manifest's
``models`` / ``namespace_models`` lists declare those). A torchvision model builder asked for
pretrained weights (``models.mobilenet_v2(pretrained=True)``, ``resnet50(weights="DEFAULT")``)
names the registry model ``torchvision/<builder>`` whose files hold them.

Secrets are read as ``await container.secrets.get("NAME")`` (or through any object whose name
says ``secrets``: ``self._secrets.get(API_KEY_NAME)``); the names are what an org admin may grant
the plugin, and the manifest's ``secrets`` list declares those the code computes.
"""

from __future__ import annotations

import ast
import re

__all__ = ["SECRET_NAME", "model_references", "secret_references", "step_resource_types"]

# Callables that load a hub model by id, and the keywords that may carry the id.
_HUB_LOADERS = {
    "from_pretrained",
    "SentenceTransformer",
    "CrossEncoder",
    "SparseEncoder",
    "load_hf_model",
    "lazy_model",
    "snapshot_download",
    "hf_hub_download",
    "pipeline",
}
_ID_KEYWORDS = ("pretrained_model_name_or_path", "model_name_or_path", "hf_model_id", "model_id", "repo_id", "model")
_NAMESPACE_LOADERS = {"load_namespace_model"}
# sentence-transformers resolves a bare name to this organisation's repo.
_ST_ORG = "sentence-transformers"
_ST_LOADERS = {"SentenceTransformer", "SparseEncoder"}
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_NAMESPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# pipeline("text-classification") names a task, not a model.
_NOT_MODELS = {"feature-extraction", "text-classification", "sentiment-analysis", "image-classification"}


def model_references(trees: dict[str, ast.Module]) -> tuple[list[str], list[str]]:
    """``(hub repo ids, namespace model names)`` that the modules name, sorted and unique."""
    hub: set[str] = set()
    own: set[str] = set()
    for tree in trees.values():
        constants = _string_constants(tree)
        builders = _torchvision_builders(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _callee(node.func)
                torchvision = _torchvision_weights(node, builders)
                if torchvision is not None:
                    hub.add(torchvision)
                elif name in _HUB_LOADERS:
                    for value in _id_arguments(node, constants):
                        hub.update(_hub_ids(name, value))
                elif name in _NAMESPACE_LOADERS:
                    for value in _id_arguments(node, constants, ("name",)):
                        if _NAMESPACE_NAME.fullmatch(value):
                            own.add(value)
            elif isinstance(node, ast.ClassDef) and any(_callee(b) == "LazyModelMixin" for b in node.bases):
                for statement in node.body:
                    model_id = _class_attribute(statement, "model_id", constants)
                    if model_id is not None:
                        hub.update(_hub_ids("from_pretrained", model_id))
    return sorted(hub), sorted(own)


_RESOURCE_TYPES = {"CPU": "cpu", "GPU": "gpu", "API": "api"}


def step_resource_types(trees: dict[str, ast.Module]) -> list[str]:
    """The ResourceTypes the modules' ``StepDefinition(..., resource_type=ResourceType.X)`` calls
    name ("cpu", "gpu", "api"), sorted and unique; a computed one is not seen."""
    found: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _callee(node.func) == "StepDefinition":
                for keyword in node.keywords:
                    if keyword.arg != "resource_type":
                        continue
                    value = keyword.value
                    if isinstance(value, ast.Attribute) and value.attr in _RESOURCE_TYPES:
                        found.add(_RESOURCE_TYPES[value.attr])
                    elif isinstance(value, ast.Constant) and str(value.value).upper() in _RESOURCE_TYPES:
                        found.add(_RESOURCE_TYPES[str(value.value).upper()])
    return sorted(found)


def _torchvision_builders(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to torchvision's models module, builder names imported from it) in ``tree``."""
    modules: set[str] = set()
    builders: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torchvision.models" and alias.asname:
                    modules.add(alias.asname)
                elif alias.name.split(".")[0] == "torchvision":
                    modules.add((alias.asname or "torchvision") + ".models")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torchvision":
            for alias in node.names:
                if node.module == "torchvision" and alias.name == "models":
                    modules.add(alias.asname or "models")
                elif node.module.startswith("torchvision.models"):
                    builders.add(alias.asname or alias.name)
    return modules, builders


def _torchvision_weights(node: ast.Call, found: tuple[set[str], set[str]]) -> str | None:
    """``torchvision/<builder>`` for a builder call that asks for pretrained weights."""
    modules, builders = found
    func = node.func
    if isinstance(func, ast.Attribute) and _dotted(func.value) in modules:
        builder = func.attr
    elif isinstance(func, ast.Name) and func.id in builders:
        builder = func.id
    else:
        return None
    for keyword in node.keywords:
        value = keyword.value
        none = isinstance(value, ast.Constant) and value.value in (None, False)
        if keyword.arg in ("pretrained", "weights") and not none and builder.islower():
            return f"torchvision/{builder}"
    return None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def secret_references(trees: dict[str, ast.Module]) -> list[str]:
    """The secret names the modules read with ``<...secrets...>.get(NAME)``, sorted and unique."""
    found: set[str] = set()
    for tree in trees.values():
        constants = _string_constants(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and "secrets" in (_callee(node.func.value) or "").lower()
                and node.args
            ):
                name = _string(node.args[0], constants)
                if name is not None and SECRET_NAME.fullmatch(name):
                    found.add(name)
    return sorted(found)


def _callee(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "string"``."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found[node.target.id] = node.value.value
    return found


def _string(node: ast.expr, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def _id_arguments(node: ast.Call, constants: dict[str, str], keywords: tuple[str, ...] = _ID_KEYWORDS) -> list[str]:
    """The string values of the call's first positional argument and of its id keywords."""
    candidates = [node.args[0]] if node.args else []
    candidates += [k.value for k in node.keywords if k.arg in keywords]
    return [v for v in (_string(c, constants) for c in candidates) if v is not None]


def _class_attribute(statement: ast.stmt, attribute: str, constants: dict[str, str]) -> str | None:
    if isinstance(statement, ast.Assign):
        if any(isinstance(t, ast.Name) and t.id == attribute for t in statement.targets):
            return _string(statement.value, constants)
    elif (
        isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and statement.target.id == attribute
        and statement.value is not None
    ):
        return _string(statement.value, constants)
    return None


def _hub_ids(loader: str, value: str) -> list[str]:
    """The hub repo ids a loader resolves ``value`` to (none for a local path or a task name)."""
    if not _REPO_ID.fullmatch(value) or value in _NOT_MODELS or value.startswith("."):
        return []
    if loader in _ST_LOADERS and "/" not in value:
        return [f"{_ST_ORG}/{value}", value]
    return [value]
