"""A retriever's ``input_schema``: the JSON schema of its execute call's ``input``.

At creation it must be a JSON schema of an object, and every ``{{INPUT.x}}`` of the stages one
of its ``properties`` (a 422 names the place of the first that is not). At execution the input
gets the ``default`` of each property it lacks and is checked against the schema, so that a
wrong input is a 422 naming its field rather than a search for the wrong thing.
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from featurebus.registry.errors import Invalid
from featurebus.registry.templates import placeholders

__all__ = ["checked_input", "checked_schema"]

EXAMPLE = '{"type": "object", "properties": {"query": {"type": "string", "minLength": 1}}, "required": ["query"]}'


def checked_schema(schema: Any, stages: list[dict[str, Any]]) -> dict[str, Any]:
    """``schema`` if it is a JSON schema of an object defining every placeholder; Invalid otherwise."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise Invalid("input_schema must be a JSON schema of an object", EXAMPLE)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        at = "".join(f".{p}" for p in exc.path)
        raise Invalid(f"input_schema{at} is not a JSON schema: {exc.message}", EXAMPLE) from None
    properties = schema.get("properties") or {}
    for where, name in placeholders(stages, "stages"):
        if name not in properties:
            raise Invalid(
                f"{where}: {{{{INPUT.{name}}}}} is not defined by input_schema (its properties: {sorted(properties)})",
                f'add "{name}" to input_schema.properties, or use one of its properties',
            )
    return schema


def checked_input(schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` with the schema's defaults filled in; Invalid naming the first field that does not fit."""
    defaults = {
        k: v["default"] for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict) and "default" in v
    }
    filled = {**defaults, **inputs}
    problem = best_match(Draft202012Validator(schema).iter_errors(filled))
    if problem is not None:
        at = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in problem.absolute_path)
        raise Invalid(f"input{at}: {problem.message}", "the retriever's input_schema says what input it takes")
    return filled
