"""``{{INPUT.x}}`` placeholders of retriever stages, filled from the execute call's ``input``."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MissingInput", "fill", "placeholders"]

_PLACEHOLDER = re.compile(r"\{\{\s*INPUT\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class MissingInput(KeyError):
    pass


def fill(value: Any, inputs: dict[str, Any]) -> Any:
    """Replace placeholders in strings (recursively in lists and dicts); a whole-string placeholder
    keeps the input's type."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value.strip())
        if whole:
            return _get(inputs, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: str(_get(inputs, m.group(1))), value)
    if isinstance(value, list):
        return [fill(v, inputs) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, inputs) for k, v in value.items()}
    return value


def _get(inputs: dict[str, Any], key: str) -> Any:
    if key not in inputs:
        raise MissingInput(key)
    return inputs[key]


def placeholders(value: Any, where: str) -> list[tuple[str, str]]:
    """Every ``{{INPUT.x}}`` in ``value`` (recursively): (the place it stands, ``x``)."""
    if isinstance(value, str):
        return [(where, m.group(1)) for m in _PLACEHOLDER.finditer(value)]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in placeholders(v, f"{where}[{i}]")]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in placeholders(v, f"{where}.{k}")]
    return []
