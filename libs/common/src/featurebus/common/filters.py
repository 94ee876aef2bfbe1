"""The filter language of retriever stages: Mixpeek's ``LogicalOperator`` and ``FilterCondition``.

A filter is a condition ``{"field", "operator", "value"}`` or a group ``{"AND"|"OR"|"NOT": [...]}``
of filters (``NOT``: none of them holds). ``field`` names a payload field, dots for nested ones.
The operators are those a vector store can apply while it searches:

- ``eq``, ``ne``: a string, a whole number, a boolean (or a number: matched as a range of one);
- ``in``, ``nin``: a non-empty list of strings or of whole numbers;
- ``gt``, ``gte``, ``lt``, ``lte``: a number, or an ISO 8601 date-time string;
- ``exists``, ``is_null``: true or false (``value`` may be left out: true);
- ``contains`` (``text``): a non-empty string the field's text contains.

``starts_with``, ``ends_with`` and ``regex`` (in Mixpeek's list) are refused naming ``contains``.
:func:`checked` returns the filter in one spelling (``AND``/``OR``/``NOT`` in capitals, every
condition with its ``value``), or raises :class:`FilterProblem` naming the place and the fix. The
registry checks with it when a retriever is created and executed; the indexer turns the checked
filter into Qdrant's (``qdrant_index.payload_filter``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["GROUPS", "OPERATORS", "FilterProblem", "checked", "is_group", "numeric"]

GROUPS = ("AND", "OR", "NOT")
OPERATORS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "is_null", "contains", "text")
UNSUPPORTED = ("starts_with", "ends_with", "regex")
MAX_CONDITIONS = 64
MAX_DEPTH = 8
EXAMPLE = (
    '{"AND": [{"field": "lang", "operator": "eq", "value": "en"}, {"field": "year", "operator": "gte", "value": 2020}]}'
)


class FilterProblem(ValueError):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def is_group(node: Any) -> bool:
    """Whether ``node`` is a group (``AND``/``OR``/``NOT``, in either case) rather than a condition."""
    return isinstance(node, dict) and any(str(k).upper() in GROUPS for k in node)


def numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def checked(node: Any, where: str, *, templated: bool = False) -> dict[str, Any]:
    """``node`` in one spelling; FilterProblem naming ``where`` (e.g. ``filters.AND[2].value``).

    With ``templated`` a ``{{INPUT.x}}`` placeholder is accepted for a value (checked once filled).
    """
    counted = [0]
    return _checked(node, where, templated, 0, counted)


def _checked(node: Any, where: str, templated: bool, depth: int, counted: list[int]) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise FilterProblem(f"{where} must be a condition or an AND/OR/NOT group", EXAMPLE)
    if depth > MAX_DEPTH:
        raise FilterProblem(f"{where}: filters nest at most {MAX_DEPTH} groups deep")
    if is_group(node):
        out: dict[str, Any] = {}
        for key, members in node.items():
            group = str(key).upper()
            if group not in GROUPS:
                raise FilterProblem(f"{where}.{key}: a group holds only AND, OR or NOT", EXAMPLE)
            if not isinstance(members, list) or not members:
                raise FilterProblem(f"{where}.{key} must list at least one filter", EXAMPLE)
            out[group] = [
                _checked(m, f"{where}.{key}[{i}]", templated, depth + 1, counted) for i, m in enumerate(members)
            ]
        return out
    counted[0] += 1
    if counted[0] > MAX_CONDITIONS:
        raise FilterProblem(f"{where}: a filter holds at most {MAX_CONDITIONS} conditions")
    field, operator = node.get("field"), node.get("operator", "eq")
    if not isinstance(field, str) or not field:
        raise FilterProblem(f"{where}.field must name a payload field", EXAMPLE)
    if operator in UNSUPPORTED:
        raise FilterProblem(
            f"{where}.operator {operator!r} cannot run inside the vector search",
            "use 'contains' (the field's text contains the value), or 'eq'/'in'",
        )
    if operator not in OPERATORS:
        raise FilterProblem(f"{where}.operator must be one of {list(OPERATORS)} (got {operator!r})")
    value = node.get("value", True if operator in ("exists", "is_null") else None)
    if not (templated and isinstance(value, str) and "{{" in value and "}}" in value):
        _check_value(operator, value, f"{where}.value")
    return {"field": field, "operator": operator, "value": value}


def _check_value(operator: str, value: Any, where: str) -> None:
    if operator in ("eq", "ne"):
        if not (isinstance(value, str | bool) or numeric(value)):
            raise FilterProblem(f"{where} must be a string, number or boolean for {operator!r}")
    elif operator in ("in", "nin"):
        strings = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        whole = isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if not (strings or whole):
            raise FilterProblem(f"{where} must be a non-empty list of strings or of whole numbers for {operator!r}")
    elif operator in ("gt", "gte", "lt", "lte"):
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise FilterProblem(
                    f"{where} must be a number or an ISO 8601 date-time for {operator!r} (got {value!r})",
                    "e.g. 2020 or '2024-01-31T00:00:00Z'",
                ) from None
        elif not numeric(value):
            raise FilterProblem(f"{where} must be a number or an ISO 8601 date-time for {operator!r}")
    elif operator in ("exists", "is_null"):
        if not isinstance(value, bool):
            raise FilterProblem(f"{where} must be true or false for {operator!r}")
    elif not isinstance(value, str) or not value:  # contains, text
        raise FilterProblem(f"{where} must be a non-empty string for {operator!r}")
