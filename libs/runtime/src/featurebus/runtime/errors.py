"""The one error a plugin host raises, and how an exception from plugin code becomes one."""

from __future__ import annotations

import errno
import traceback
from pathlib import Path
from typing import Any

from featurebus.common.events import ReasonCode
from featurebus.sdk.container import LLMError
from featurebus.sdk.model_loading import import_hint
from featurebus.sdk.violations import SandboxViolation

__all__ = ["PluginError", "describe", "plugin_failure"]


class PluginError(Exception):
    """The plugin could not be loaded or could not answer; ``reason`` is a ReasonCode."""

    def __init__(self, reason: ReasonCode, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.message, self.hint = reason, message, hint

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray) intact
        return (PluginError, (self.reason, self.message, self.hint))


def describe(exc: BaseException, plugin_dir: Path) -> str:
    """The exception, and where in the plugin's own code it came from."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        try:
            rel = Path(frame.filename).resolve().relative_to(plugin_dir)
        except ValueError:
            continue
        where = f" (at {rel.as_posix()}:{frame.lineno})"
        break
    return f"{type(exc).__name__}: {exc}{where}"


_REFUSED_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS}


def sandbox_refusal(exc: BaseException, plugin_dir: Path, memory_limit_bytes: int | None) -> PluginError | None:
    """A ``sandbox_violation`` error when ``exc`` is (or was caused by) a refusal of the sandbox.

    ``memory_limit_bytes`` is set only inside the platform's sandbox; without it a MemoryError or
    a permission error is the plugin's own failure, not the sandbox's.
    """
    seen: BaseException | None = exc
    for _ in range(16):  # the plugin may have wrapped the violation in an error of its own
        if seen is None:
            break
        if isinstance(seen, SandboxViolation):
            return PluginError(ReasonCode.SANDBOX_VIOLATION, seen.message, seen.hint)
        if isinstance(seen, MemoryError) and memory_limit_bytes:
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the plugin ran out of memory: its limit is {memory_limit_bytes / 1024**3:g} GiB "
                f"({describe(seen, plugin_dir)})",
                "raise compute_profile.actor_memory_gb, or lower compute_profile.batch_size",
            )
        if memory_limit_bytes and isinstance(seen, OSError) and seen.errno in _REFUSED_ERRNOS:
            # In the sandbox these come from the kernel's side of it (seccomp, read-only mounts).
            return PluginError(
                ReasonCode.SANDBOX_VIOLATION,
                f"the sandbox refused an operation: {type(seen).__name__}: {seen}",
                "plugin code may not start processes, write outside its scratch directory or open connections",
            )
        seen = seen.__cause__ or seen.__context__
    return None


# Exceptions of the Hugging Face libraries (by name: the host does not import them) that mean the
# model's files are not on this machine and the hub may not be asked.
_MISSING_MODEL_ERRORS = {
    "ModelNotAvailable",  # featurebus.sdk.model_loading
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "RepositoryNotFoundError",
    "GatedRepoError",
}
# The parameters naming the model in the loaders of transformers, sentence-transformers and the hub.
_MODEL_PARAMETERS = ("model_name_or_path", "pretrained_model_name_or_path", "hf_model_id", "model_id", "repo_id")


def model_unavailable(exc: BaseException) -> tuple[str, str] | None:
    """(message, hint) when ``exc`` is (or was caused by) a model that this worker cannot load
    because its files are not here (workers have no model hub); None for any other failure."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 16:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    missing = next(
        (
            e
            for e in chain
            if type(e).__name__ in _MISSING_MODEL_ERRORS or (isinstance(e, OSError) and _says_model_missing(str(e)))
        ),
        None,
    )
    if missing is None:
        return None
    name = _model_named(chain)
    if type(missing).__name__ == "ModelNotAvailable":
        message = str(missing)
    else:
        message = (
            f"model {name or '(unnamed)'!r} is not available to this worker: workers have no model hub, and it is "
            f"not in the model registry ({type(missing).__name__}: {str(missing).splitlines()[0][:300]})"
        )
    hint = getattr(missing, "hint", None) or import_hint(name or "<repo id>")
    return message, hint


def _says_model_missing(text: str) -> bool:
    """transformers' OSError for a model neither on the hub nor in the cache (not any error naming the hub)."""
    return "huggingface.co" in text and ("cached files" in text or "not a local folder" in text)


def _model_named(chain: list[BaseException]) -> str | None:
    """The model a loader was asked for: its parameter in the outermost frame that has one."""
    for error in chain:
        tb = error.__traceback__
        while tb is not None:
            local = tb.tb_frame.f_locals
            for key in _MODEL_PARAMETERS:
                value = local.get(key)
                if isinstance(value, str) and value:
                    return value
            tb = tb.tb_next
    return None


LLM_HINT = (
    "a container.llm call failed and the step did not handle it; catch LLMError to fail only its row, "
    "or retry the failed documents once the provider answers again"
)


def llm_failure(exc: BaseException, plugin_dir: Path) -> PluginError | None:
    """An ``llm_error`` error when ``exc`` is (or was caused by) a failed ``container.llm`` call."""
    seen: BaseException | None = exc
    for _ in range(16):  # the plugin may have wrapped it in an error of its own
        if seen is None:
            return None
        if isinstance(seen, LLMError):
            message = describe(exc, plugin_dir)
            if seen is not exc:
                message += f" (caused by {type(seen).__name__}: {seen.message})"
            return PluginError(ReasonCode.LLM_ERROR, message, seen.hint or LLM_HINT)
        seen = seen.__cause__ or seen.__context__
    return None


def plugin_failure(
    exc: BaseException, plugin_dir: Path, memory_limit_bytes: int | None, reason: ReasonCode, prefix: str = ""
) -> PluginError:
    """What an exception of plugin code (while loading: ``reason`` plugin_load_failed; while
    answering: plugin_exception) becomes: a sandbox refusal, a model not available here (reason
    model_not_available), a failed ``container.llm`` call while answering (reason llm_error), else
    ``reason`` with the exception and where it arose."""
    refused = sandbox_refusal(exc, plugin_dir, memory_limit_bytes)
    if refused is not None:
        return refused
    missing = model_unavailable(exc)
    if missing is not None:  # at load or at a call alike: the fix is the same
        return PluginError(ReasonCode.MODEL_NOT_AVAILABLE, prefix + missing[0], missing[1])
    if reason is ReasonCode.PLUGIN_EXCEPTION:  # a load that fails stays plugin_load_failed
        llm = llm_failure(exc, plugin_dir)
        if llm is not None:
            return PluginError(llm.reason, prefix + llm.message, llm.hint)
    return PluginError(reason, prefix + describe(exc, plugin_dir))
