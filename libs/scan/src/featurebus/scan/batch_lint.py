"""The guide's batch-processor linter: sequential patterns that make a plugin 10-100x slower.

- SEQ001: iterating rows (``iterrows``, ``itertuples``, ``range(len(batch))``) without parallelism
- SEQ002: a model or API call inside such a loop (one call per row instead of one per batch)
- SEQ003: per-item tokenization inside such a loop

Findings are warnings with line numbers: the plugin works, it is just slow.
"""

from __future__ import annotations

import ast

from featurebus.common.events import Violation
from featurebus.scan.security_scan import parse_source

__all__ = ["lint_source", "lint_tree"]

MODEL_CALLS = {
    "encode", "generate", "predict", "forward", "infer", "embed", "transcribe", "run", "classify",
    "get", "post", "request", "chat", "complete", "process",
}  # fmt: skip
MODEL_OBJECTS = {"model", "_model", "llm", "_llm", "client", "_client", "session", "_session", "pipe", "_pipe"}
TOKENIZERS = {"tokenizer", "_tokenizer", "processor", "_processor"}


def _row_loop(node: ast.AST) -> bool:
    if not isinstance(node, ast.For | ast.AsyncFor):
        return False
    it = node.iter
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr in ("iterrows", "itertuples"):
        return True
    return (
        isinstance(it, ast.Call)
        and isinstance(it.func, ast.Name)
        and it.func.id == "range"
        and len(it.args) == 1
        and isinstance(it.args[0], ast.Call)
        and isinstance(it.args[0].func, ast.Name)
        and it.args[0].func.id == "len"
    )


def _owner(func: ast.expr) -> str:
    """``self._model.encode`` → ``_model``; ``tokenizer(...)`` → ``tokenizer``."""
    if isinstance(func, ast.Attribute):
        value = func.value
        return value.attr if isinstance(value, ast.Attribute) else value.id if isinstance(value, ast.Name) else ""
    return func.id if isinstance(func, ast.Name) else ""


def _called(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def lint_source(filename: str, data: bytes) -> list[Violation]:
    parsed = parse_source(filename, data)  # unparseable source is the security scan's to report
    return [] if isinstance(parsed, Violation) else lint_tree(filename, parsed)


def lint_tree(filename: str, tree: ast.Module) -> list[Violation]:
    found: list[Violation] = []

    def warn(node: ast.AST, code: str, message: str, hint: str) -> None:
        found.append(
            Violation(
                filename=filename,
                line=getattr(node, "lineno", 0),
                severity="WARNING",
                code=code,
                message=message,
                hint=hint,
            )
        )

    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For | ast.AsyncFor) and _row_loop(n)]
    for loop in loops:
        warn(
            loop,
            "SEQ001",
            "row-by-row iteration over the batch",
            "collect the column first (batch['data'].tolist()) and process the list in one call, or use parallel_io",
        )
        for node in ast.walk(loop):
            if not isinstance(node, ast.Call) or node is loop.iter:
                continue
            owner, called = _owner(node.func), _called(node.func)
            if owner in TOKENIZERS or called in ("tokenize", "encode_plus") or called in TOKENIZERS:
                warn(
                    node,
                    "SEQ003",
                    f"per-item tokenization ({owner or called}) inside a row loop",
                    "tokenize the whole list at once: tokenizer(texts, padding=True, return_tensors='pt')",
                )
            elif owner in MODEL_OBJECTS or called in MODEL_OBJECTS or (called in MODEL_CALLS and owner):
                warn(
                    node,
                    "SEQ002",
                    f"model or API call ({owner + '.' if owner else ''}{called}) inside a row loop",
                    "call the model once on the whole batch; for APIs use concurrent_api_calls",
                )
    return sorted(found, key=lambda v: (v.line, v.code))
