"""What a model import must be, and what its uploaded bytes must be (pure: no I/O).

A request names the model and lists its files (path, size_bytes, sha256); :func:`checked_files`
returns them as stored or refuses, naming every bad field (``files[2].path``) and the fix. After
the client PUT the bytes, :func:`staged_problem` says what is wrong with one file's bytes, as found
in an immutable copy of them. The layout and the format rules are
:mod:`featurebus.common.model_store`'s, shared with inference.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from featurebus.common.model_store import (
    MAX_FILES,
    NAMESPACE_MODEL_NAME,
    REPO_ID,
    ModelFile,
    content_problem,
    file_problem,
    weights_format,
)
from featurebus.registry.errors import Invalid

__all__ = ["MAX_SHOWN", "FileSpec", "Problem", "checked_files", "refusal", "staged_problem"]

# A refusal lists this many problems, then how many more there are.
MAX_SHOWN = 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SHA256_HINT = "send each file's SHA-256 as 64 hex digits, as `sha256sum FILE` prints it"


@dataclass(frozen=True)
class FileSpec:
    """One file as a request declares it, before any check."""

    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Problem:
    """What is wrong (naming the field or the file) and how to fix it."""

    message: str
    hint: str


def refusal(problems: Sequence[Problem]) -> Invalid:
    """One 422 for every problem found, so that a client fixes them all in one go."""
    shown = [p.message for p in problems[:MAX_SHOWN]]
    if len(problems) > MAX_SHOWN:
        shown.append(f"and {len(problems) - MAX_SHOWN} more")
    hints = list(dict.fromkeys(p.hint for p in problems))
    return Invalid("; ".join(shown), "; ".join(hints[:3]))


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _name_problem(name: str, cluster: bool) -> Problem | None:
    if cluster and not re.fullmatch(REPO_ID, name):
        return Problem(
            f"name {_shown(name)} is not a Hugging Face repo id",
            "send the repo id as the Hub shows it, 'owner/name' or 'name' "
            "(e.g. 'sentence-transformers/all-MiniLM-L6-v2'): letters, digits, '.', '_' and '-'",
        )
    if not cluster and not re.fullmatch(NAMESPACE_MODEL_NAME, name):
        return Problem(
            f"name {_shown(name)} must start with a letter or digit and hold at most 128 letters, "
            "digits, '.', '_' and '-'",
            "name the model like 'my-fine-tuned-bert_1_0_0'",
        )
    return None


def _file_problems(i: int, spec: FileSpec, first_of_path: dict[str, int]) -> list[Problem]:
    problems = []
    why = file_problem(spec.path)
    if why is not None:
        problems.append(Problem(f"files[{i}].path {_shown(spec.path)}: {why}", "fix the path or leave the file out"))
    elif spec.path in first_of_path:
        problems.append(
            Problem(
                f"files[{i}].path {_shown(spec.path)}: files[{first_of_path[spec.path]}] has this path too",
                "list each file of the model once",
            )
        )
    first_of_path.setdefault(spec.path, i)
    if not _SHA256.match(spec.sha256.lower()):
        problems.append(Problem(f"files[{i}].sha256 {_shown(spec.sha256)} is not 64 hex digits", _SHA256_HINT))
    if spec.size_bytes < 0:
        problems.append(
            Problem(f"files[{i}].size_bytes {spec.size_bytes} is negative", "send the file's exact size in bytes")
        )
    return problems


def checked_files(name: str, files: Sequence[FileSpec], *, cluster: bool, max_bytes: int) -> list[ModelFile]:
    """The files as stored (sha256 in lower case); :class:`Invalid` naming every bad field otherwise."""
    problems = [p for p in [_name_problem(name, cluster)] if p is not None]
    if not 1 <= len(files) <= MAX_FILES:
        problems.append(
            Problem(
                f"files: a model has 1 to {MAX_FILES} files, not {len(files)}",
                f"list every file of the model directory (config, tokenizer, weights), at most {MAX_FILES}",
            )
        )
    first_of_path: dict[str, int] = {}
    for i, spec in enumerate(files[: MAX_FILES + 1]):
        problems += _file_problems(i, spec, first_of_path)
    total = sum(max(spec.size_bytes, 0) for spec in files)
    if total > max_bytes:
        problems.append(
            Problem(
                f"files: the model's files add up to {total} bytes; the limit is {max_bytes} bytes per model",
                "import a smaller model (the operator sets the limit with FEATUREBUS_MAX_MODEL_BYTES)",
            )
        )
    if not cluster and files and not any(weights_format(spec.path) for spec in files):
        problems.append(
            Problem(
                "files: a namespace model needs at least one weights file (.safetensors, .onnx or .gguf)",
                "add the model's weights, converted to safetensors, ONNX or GGUF if they are pickled",
            )
        )
    if problems:
        raise refusal(problems)
    return [ModelFile(path=spec.path, size_bytes=spec.size_bytes, sha256=spec.sha256.lower()) for spec in files]


def staged_problem(index: int, file: ModelFile, size: int, sha256: str, head: bytes) -> Problem | None:
    """What is wrong with the bytes PUT for ``files[index]`` (their size, sha256 and first bytes)."""
    where = f"files[{index}] {_shown(file.path)}"
    again = "PUT the right file to its presigned_url (before expires_at), then confirm again"
    if size != file.size_bytes:
        return Problem(
            f"{where}: {size} bytes were PUT but size_bytes said {file.size_bytes} "
            "(the upload was cut short or another file was sent)",
            again,
        )
    if sha256 != file.sha256:
        return Problem(f"{where}: its bytes do not match sha256 {file.sha256} (they hash to {sha256})", again)
    why = content_problem(file.path, head)
    if why is not None:
        return Problem(f"{where} {why}", again)
    return None
