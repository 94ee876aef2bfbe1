"""The shape of retriever stages, checked without I/O: at creation (placeholders allowed) and at
execution (placeholders filled), so that every bad value is a 422 naming its field.

A stage is ``{"stage_id"|"stage_type", "config": {"stage_id", "parameters": {...}}}`` (or
``"parameters"`` beside ``config``). Search stages list ``searches`` of
``{"feature_uri", "query", "top_k"}``; filter stages give ``filters`` in the filter language of
:mod:`featurebus.common.filters` (or ``{field: value}`` equalities, or ``field``/``operator``/
``value``), pushed down into the search wherever the stage stands; a ``limit`` stage gives ``limit``.

Stages after the search act on its results in their order: ``sort`` orders them (``sort_by``, a
list of Mixpeek's ``{"field", "direction"}``, or one of them; the field ``score`` or a payload
field, dots for nested ones; stable, results without the field last), ``group_by`` keeps the best
``max_per_group`` of each value of ``field`` (``dedupe``: one per ``field``, ``object_id`` unless
given; the searches then give five times the results wanted, so that enough groups remain), and a
``limit`` after one of them cuts there. ``rerank`` is refused: no reranker is installed yet, and a stage that
silently did nothing would hide it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from featurebus.common.filters import FilterProblem, checked, is_group
from featurebus.common.queries import SearchHit

__all__ = [
    "FILTER_STAGES",
    "GROUP_STAGES",
    "MAX_LIMIT",
    "SEARCH_STAGES",
    "ExecutionPlan",
    "Group",
    "Limit",
    "PostStage",
    "Sort",
    "StageProblem",
    "check_stages",
    "count",
    "field_value",
    "plan_execution",
    "stage_id",
    "stage_params",
]

SEARCH_STAGES = {"feature_search", "semantic_search", "vector_search"}
FILTER_STAGES = {"filter", "attribute_filter"}
GROUP_STAGES = {"group_by", "dedupe"}
SUPPORTED = sorted(SEARCH_STAGES | FILTER_STAGES | GROUP_STAGES | {"sort", "limit"})
RERANKERS: list[str] = []  # none installed yet: a rerank stage is refused, naming them
MAX_LIMIT = 1000
MAX_SEARCHES = 32
MAX_STAGES = 64
SEARCH_EXAMPLE = '{"feature_uri": "mixpeek://name@1.0.0/feature", "query": "{{INPUT.query}}"}'
FILTER_EXAMPLE = '{"filters": {"AND": [{"field": "lang", "operator": "eq", "value": "en"}]}}'
SORT_EXAMPLE = '{"sort_by": [{"field": "published_at", "direction": "desc"}]}'
GROUP_CANDIDATES = 5  # a search before a group_by gives this many times the results wanted
GROUP_EXAMPLE = '{"field": "object_id", "max_per_group": 1}'


class StageProblem(ValueError):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _placeholder(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value and "}}" in value


def count(value: Any, where: str, *, templated: bool = False) -> int | None:
    """A positive whole number (capped at MAX_LIMIT), None when absent; StageProblem naming ``where`` else.

    With ``templated`` a ``{{INPUT.x}}`` placeholder is accepted as is (checked once filled).
    """
    if value is None:
        return None
    if templated and _placeholder(value):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        shown = value if isinstance(value, int | float) else type(value).__name__
        raise StageProblem(f"{where} must be a whole number from 1 to {MAX_LIMIT} (got {shown!r})")
    if value < 1:
        raise StageProblem(f"{where} must be at least 1 (got {value})", f"at most {MAX_LIMIT} results are returned")
    return min(value, MAX_LIMIT)


def stage_id(stage: dict[str, Any], where: str) -> str:
    config = stage.get("config")
    sid = (config.get("stage_id") if isinstance(config, dict) else None) or stage.get("stage_id")
    sid = sid or stage.get("stage_type")
    if not isinstance(sid, str):
        raise StageProblem(f"{where}.config.stage_id must be a string", "e.g. feature_search, filter or limit")
    return sid


def stage_params(stage: dict[str, Any], where: str) -> dict[str, Any]:
    config = stage.get("config")
    if config is not None and not isinstance(config, dict):
        raise StageProblem(f"{where}.config must be an object", '{"stage_id": ..., "parameters": {...}}')
    params = (config or {}).get("parameters") or stage.get("parameters") or {}
    if not isinstance(params, dict):
        raise StageProblem(f"{where}.config.parameters must be an object")
    return params


def _filters(params: dict[str, Any], where: str, templated: bool) -> list[dict[str, Any]]:
    """A filter stage's filters, each checked (common.filters), all of which must hold.

    ``filters`` is a Mixpeek ``LogicalOperator`` (``{"AND": [...]}``), one ``FilterCondition``
    (``{"field", "operator", "value"}``) or ``{field: value}`` equalities (a list: any of its
    items); ``field``/``operator``/``value`` beside it add one condition more.
    """
    given = params.get("filters")
    if given is not None and not isinstance(given, dict):
        raise StageProblem(f"{where}.filters must be an object", FILTER_EXAMPLE)
    at = f"{where}.filters"
    if given is None or not given:
        nodes: list[tuple[str, Any]] = []
    elif is_group(given) or ("field" in given and "operator" in given):
        nodes = [(at, given)]
    else:
        nodes = [(f"{at}.{k}", _equality(k, v)) for k, v in given.items()]
    if "field" in params:
        nodes.append((where, {k: params[k] for k in ("field", "operator", "value") if k in params}))
    try:
        return [checked(node, place, templated=templated) for place, node in nodes]
    except FilterProblem as exc:
        raise StageProblem(str(exc), exc.hint or FILTER_EXAMPLE) from None


def _equality(field: str, value: Any) -> dict[str, Any]:
    return {"field": field, "operator": "in" if isinstance(value, list) else "eq", "value": value}


def _searches(params: dict[str, Any], where: str, templated: bool) -> list[tuple[str, dict[str, Any]]]:
    found = params.get("searches")
    if not isinstance(found, list) or not found:
        raise StageProblem(f"{where}.searches must list at least one search", SEARCH_EXAMPLE)
    if len(found) > MAX_SEARCHES:
        raise StageProblem(f"{where}.searches lists {len(found)} searches; at most {MAX_SEARCHES}")
    out = []
    for j, search in enumerate(found):
        at = f"{where}.searches[{j}]"
        if not isinstance(search, dict):
            raise StageProblem(f"{at} must be an object", SEARCH_EXAMPLE)
        if not isinstance(search.get("feature_uri"), str):
            raise StageProblem(f"{at}.feature_uri must be a string", SEARCH_EXAMPLE)
        query = search.get("query")
        if query is not None and not isinstance(query, str | dict):
            raise StageProblem(f"{at}.query must be text (or {{INPUT.x}})", SEARCH_EXAMPLE)
        count(search.get("top_k"), f"{at}.top_k", templated=templated)
        out.append((at, search))
    count(params.get("final_top_k"), f"{where}.final_top_k", templated=templated)
    return out


@dataclass(frozen=True)
class Sort:
    """Order the results by ``keys`` ((field, descending), the first deciding), stably; the
    results without a field go last for it, in either direction."""

    keys: tuple[tuple[str, bool], ...]

    def apply(self, hits: list[SearchHit]) -> list[SearchHit]:
        for name, descending in reversed(self.keys):  # stable sorts, the least significant key first
            keyed = [(_orderable(field_value(hit, name)), hit) for hit in hits]
            valued = sorted(
                ((k, hit) for k, hit in keyed if k is not None), key=lambda pair: pair[0], reverse=descending
            )
            hits = [hit for _, hit in valued] + [hit for k, hit in keyed if k is None]
        return hits


@dataclass(frozen=True)
class Group:
    """Keep the first ``most`` results of each value of ``field`` (results without it each alone)."""

    field: str
    most: int

    def apply(self, hits: list[SearchHit]) -> list[SearchHit]:
        kept: list[SearchHit] = []
        seen: dict[str, int] = {}
        for hit in hits:
            value = field_value(hit, self.field)
            if value is not None:
                key = json.dumps(value, sort_keys=True, default=str)
                seen[key] = seen.get(key, 0) + 1
                if seen[key] > self.most:
                    continue
            kept.append(hit)
        return kept


@dataclass(frozen=True)
class Limit:
    """Keep the first ``most`` results."""

    most: int

    def apply(self, hits: list[SearchHit]) -> list[SearchHit]:
        return hits[: self.most]


def field_value(hit: SearchHit, name: str) -> Any:
    """``score``, ``document_id``, ``collection_id``, or the payload's field (dots for nested ones)."""
    if name in ("score", "document_id", "collection_id"):
        return getattr(hit, name)
    value: Any = hit.payload
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _orderable(value: Any) -> tuple[int, Any] | None:
    """Numbers before texts before anything else (compared as JSON); None for a missing value."""
    if value is None:
        return None
    if isinstance(value, bool | int | float):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (2, json.dumps(value, sort_keys=True, default=str))


PostStage = Sort | Group | Limit


def _sort(params: dict[str, Any], where: str) -> Sort:
    given = params.get("sort_by", params if "field" in params else None)
    options = given if isinstance(given, list) else [given] if isinstance(given, dict) else None
    if not options:
        raise StageProblem(f"{where}.sort_by must list the fields to sort by", SORT_EXAMPLE)
    keys = []
    for j, option in enumerate(options):
        at = f"{where}.sort_by[{j}]" if isinstance(given, list) else where
        if not isinstance(option, dict) or not isinstance(option.get("field"), str) or not option["field"]:
            raise StageProblem(f"{at}.field must name a payload field (or score)", SORT_EXAMPLE)
        direction = option.get("direction", "asc")
        if direction not in ("asc", "desc"):
            raise StageProblem(f"{at}.direction must be 'asc' or 'desc' (got {direction!r})", SORT_EXAMPLE)
        keys.append((option["field"], direction == "desc"))
    return Sort(tuple(keys))


def _group(sid: str, params: dict[str, Any], where: str, templated: bool) -> Group:
    field = params.get("field", "object_id" if sid == "dedupe" else None)
    if not isinstance(field, str) or not field:
        raise StageProblem(f"{where}.field must name the payload field to group by", GROUP_EXAMPLE)
    most = 1 if sid == "dedupe" else count(params.get("max_per_group"), f"{where}.max_per_group", templated=templated)
    return Group(field, most or 1)


def check_stages(stages: Any, *, templated: bool = True) -> list[tuple[str, dict[str, Any]]]:
    """Check every stage's shape; the searches, each with the field name it is known by."""
    if not isinstance(stages, list) or not stages:
        raise StageProblem("stages must be a non-empty list", "start with a feature_search stage")
    if len(stages) > MAX_STAGES:
        raise StageProblem(f"stages lists {len(stages)} stages; at most {MAX_STAGES}")
    searches: list[tuple[str, dict[str, Any]]] = []
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(stage, dict):
            raise StageProblem(f"{where} must be an object")
        sid, params = stage_id(stage, where), stage_params(stage, where)
        at = f"{where}.config.parameters"
        if sid in SEARCH_STAGES:
            searches.extend(_searches(params, at, templated))
        elif sid in FILTER_STAGES:
            _filters(params, at, templated)
        elif sid == "limit":
            count(params.get("limit"), f"{at}.limit", templated=templated)
        elif sid == "sort":
            _sort(params, at)
        elif sid in GROUP_STAGES:
            _group(sid, params, at, templated)
        elif sid == "rerank":
            raise StageProblem(
                f"{where}: stage 'rerank' needs a reranker, and this platform has none installed "
                f"(available: {RERANKERS or 'none'})",
                "drop the stage; a sort stage orders the results by the score or a payload field",
            )
        else:
            raise StageProblem(f"{where}: stage {sid!r} is not supported", f"supported stages: {SUPPORTED}")
    if not searches:
        raise StageProblem(
            "a retriever needs a feature_search stage", "add a stage with config.stage_id = feature_search"
        )
    return searches


@dataclass
class ExecutionPlan:
    limit: int  # how many results each search gives, and the most an execution answers
    searches: list[tuple[str, dict[str, Any]]]
    filters: list[dict[str, Any]] = field(default_factory=list)  # checked filters, all of which must hold
    after: list[PostStage] = field(default_factory=list)  # on the fused results, in order

    @property
    def fetch(self) -> int:
        """How many results each search gives: more than ``limit`` when a group_by will collapse them."""
        grouped = any(isinstance(stage, Group) for stage in self.after)
        return min(MAX_LIMIT, self.limit * GROUP_CANDIDATES) if grouped else self.limit

    def finish(self, fused: list[SearchHit]) -> list[SearchHit]:
        """The fused results through the stages after the search, at most ``limit`` of them."""
        for stage in self.after:
            fused = stage.apply(fused)
        return fused[: self.limit]


def plan_execution(stages: Any, requested_limit: Any, default_limit: int) -> ExecutionPlan:
    """Stages with their placeholders filled → what to search, which filters, how many results."""
    searches = check_stages(stages, templated=False)
    limit = count(requested_limit, "limit")
    filters: list[dict[str, Any]] = []
    after: list[PostStage] = []
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        sid, params = stage_id(stage, where), stage_params(stage, where)
        at = f"{where}.config.parameters"
        if sid in SEARCH_STAGES:
            top_ks = [count(s.get("top_k"), "top_k") for s in params["searches"]]
            limit = limit or count(params.get("final_top_k"), "final_top_k") or max((k or 0 for k in top_ks), default=0)
            limit = limit or None
        elif sid in FILTER_STAGES:
            filters.extend(_filters(params, at, False))
        elif sid == "limit":
            cap = count(params.get("limit"), f"{at}.limit")
            if cap and after:
                after.append(Limit(cap))
            elif cap:
                limit = min(limit or MAX_LIMIT, cap)
        elif sid == "sort":
            after.append(_sort(params, at))
        elif sid in GROUP_STAGES:
            after.append(_group(sid, params, at, False))
    return ExecutionPlan(limit=limit or default_limit, searches=searches, filters=filters, after=after)
