"""What a JSON request body must be before any route sees it (pure: no I/O).

Strict UTF-8, strict JSON (no ``NaN``/``Infinity``, no numbers that overflow to infinity), nested
at most ``MAX_DEPTH`` levels, integers that MongoDB can store (64 bits), no lone surrogates
(they cannot be encoded for Kafka or MongoDB) and no NUL in object keys (BSON refuses them).
Each refusal names where in the body it is and how to fix it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_STORED_JSON", "BodyProblem", "json_size", "parse_json_body"]

MAX_DEPTH = 64
# A free-form value that the registry stores in a MongoDB document or sends on Kafka (a bucket
# schema, plugin parameters, retriever stages) stays far below MongoDB's 16 MB and Kafka's 1 MiB.
MAX_STORED_JSON = 256 * 1024
_INT64 = 2**63
_SURROGATE = re.compile("[\ud800-\udfff]")
_HINT = "send a JSON document encoded in UTF-8 with Content-Type: application/json"


class BodyProblem(ValueError):
    def __init__(self, message: str, hint: str = _HINT) -> None:
        super().__init__(message)
        self.hint = hint


def _refuse_constant(name: str) -> Any:
    raise BodyProblem(f"body: {name} is not a JSON number", "send finite numbers (JSON has no NaN or Infinity)")


def _where(path: tuple[str | int, ...]) -> str:
    if len(path) > 8:  # a deeply nested place: where it starts, and how deep it is
        return f"{_where(path[:4])}...({len(path)} levels)"
    out = "body" if path and isinstance(path[0], int) else ""
    for part in path:
        if isinstance(part, str):
            part = part if len(part) <= 40 else part[:37] + "..."
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out or "body"


def parse_json_body(raw: bytes) -> Any:
    """The body's JSON value; BodyProblem naming the place and the fix otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyProblem(f"body: byte {exc.start} is not UTF-8 ({exc.reason})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise BodyProblem(f"body: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BodyProblem(f"body: nested deeper than {MAX_DEPTH} levels", "flatten the document") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise BodyProblem(f"body: {exc}", "send numbers MongoDB can store: 64-bit integers, finite floats") from None
    _check(value)
    return value


def _check(value: Any) -> None:
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise BodyProblem(f"body: nested deeper than {MAX_DEPTH} levels at {_where(path)}", "flatten the document")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key or _SURROGATE.search(key):
                    raise BodyProblem(
                        f"{_where(path)}: a key holds a NUL or an unpaired surrogate",
                        "use keys of printable UTF-8 text",
                    )
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, str):
            if _SURROGATE.search(item):
                raise BodyProblem(f"{_where(path)}: the text holds an unpaired UTF-16 surrogate", "send valid Unicode")
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -_INT64 <= item < _INT64:
                digits = str(item)
                shown = digits if len(digits) < 24 else f"{digits[:12]}...({len(digits)} digits)"
                raise BodyProblem(f"{_where(path)}: {shown} does not fit in 64 bits", "send a smaller integer")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BodyProblem(f"{_where(path)}: the number is too large (it overflows to infinity)")


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
