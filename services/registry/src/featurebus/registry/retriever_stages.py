"""The shape of retriever stages, checked without I/O: at creation (placeholders allowed) and at
execution (placeholders filled), so that every bad value is a 422 naming its field.

A stage is ``{"stage_id"|"stage_type", "config": {"stage_id", "parameters": {...}}}`` (or
``"parameters"`` beside ``config``). Search stages list ``searches`` of
``{"feature_uri", "query", "top_k", "min_score", "weight"}``, fused by ``fusion`` (``rrf``, the
default, or ``weighted``: the sum of each search's score times its weight); filter stages give
``filters`` in the filter language of :mod:`featurebus.common.filters` (or ``{field: value}``
equalities, or ``field``/``operator``/``value``), pushed down into the search wherever the stage
stands; a ``limit`` stage gives ``limit``.

Stages after the search act on its results in their order: ``sort`` orders them (``sort_by``, a
list of Mixpeek's ``{"field", "direction"}``, or one of them; the field ``score`` or a payload
field, dots for nested ones; stable, results without the field last), ``group_by`` keeps the best
``max_per_group`` of each value of ``field`` (``dedupe``: one per ``field``, ``object_id`` unless
given; the searches then give five times the results wanted, so that enough groups remain),
``rerank`` re-scores the first ``top_n`` by ``model`` against ``query`` (the text in each result's
``text_field``; the search's score kept as ``search_score``), ``llm_enrich`` (``agentic_enrich``)
asks the operator's LLM about each of the first ``top_n`` results (``prompt`` filled in with the
result's ``{{DOC.field}}`` values, ``image_field``'s URLs sent with it) and writes the answer to
``output_field`` (the JSON object ``output_schema`` asks for, checked against it; else the text;
a call that failed leaves the result where it was, with the error in its ``stage_errors``), and a
``limit`` after one of them cuts there. Each records what it did (:class:`StageRun`) for the
response's statistics and ``explain``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from featurebus.common.filters import FilterProblem, checked, is_group
from featurebus.common.queries import EnrichItem, EnrichResult, SearchHit

__all__ = [
    "FILTER_STAGES",
    "GROUP_STAGES",
    "LLM_STAGES",
    "MAX_LIMIT",
    "RERANK_STAGES",
    "SEARCH_STAGES",
    "Enrich",
    "Enrichment",
    "ExecutionPlan",
    "Finished",
    "Group",
    "Limit",
    "PostStage",
    "Rerank",
    "Scorer",
    "Sort",
    "StageProblem",
    "StageRun",
    "check_stages",
    "count",
    "field_value",
    "number",
    "plan_execution",
    "rerank_stages",
    "stage_id",
    "stage_params",
]

SEARCH_STAGES = {"feature_search", "semantic_search", "vector_search"}
FILTER_STAGES = {"filter", "attribute_filter"}
GROUP_STAGES = {"group_by", "dedupe"}
RERANK_STAGES = {"rerank"}
LLM_STAGES = {"llm_enrich", "agentic_enrich", "llm_enrichment"}
SUPPORTED = sorted(SEARCH_STAGES | FILTER_STAGES | GROUP_STAGES | RERANK_STAGES | LLM_STAGES | {"sort", "limit"})
FUSIONS = ("rrf", "weighted")
MAX_LIMIT = 1000
MAX_SEARCHES = 32
MAX_STAGES = 64
SEARCH_EXAMPLE = '{"feature_uri": "mixpeek://name@1.0.0/feature", "query": "{{INPUT.query}}"}'
FILTER_EXAMPLE = '{"filters": {"AND": [{"field": "lang", "operator": "eq", "value": "en"}]}}'
SORT_EXAMPLE = '{"sort_by": [{"field": "published_at", "direction": "desc"}]}'
GROUP_CANDIDATES = 5  # a search before a group_by gives this many times the results wanted
GROUP_EXAMPLE = '{"field": "object_id", "max_per_group": 1}'
RERANK_EXAMPLE = '{"model": "intfloat/multilingual-e5-small", "query": "{{INPUT.query}}", "top_n": 50}'
LLM_EXAMPLE = (
    '{"prompt": "Does {{DOC.text}} answer {{INPUT.query}}?", "output_field": "verdict", '
    '"output_schema": {"type": "object", "properties": {"relevant": {"type": "boolean"}}}}'
)
LLM_TOP_N = 10  # results an LLM stage asks about unless top_n says otherwise
LLM_MAX_TOP_N = 200  # inference's bound on one stage's calls
MAX_PROMPT_BYTES = 64 * 1024  # one result's filled-in prompt
_DOC = re.compile(r"\{\{\s*DOC\.([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_INPUT = re.compile(r"\s*INPUT\.[A-Za-z_][A-Za-z0-9_]*\s*")


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
        number(search.get("min_score"), f"{at}.min_score", templated=templated)
        weight = number(search.get("weight"), f"{at}.weight", templated=templated)
        if weight is not None and weight < 0:
            raise StageProblem(f"{at}.weight must be at least 0 (got {weight})", "weights scale each search's score")
        out.append((at, search))
    count(params.get("final_top_k"), f"{where}.final_top_k", templated=templated)
    _fusion(params, where)
    return out


def _fusion(params: dict[str, Any], where: str) -> str:
    fusion = params.get("fusion", "rrf")
    if fusion not in FUSIONS:
        raise StageProblem(
            f"{where}.fusion must be one of {list(FUSIONS)} (got {fusion!r})",
            "rrf fuses by rank; weighted sums each search's score times its weight",
        )
    return str(fusion)


def number(value: Any, where: str, *, templated: bool = False) -> float | None:
    """A finite number, None when absent; StageProblem naming ``where`` else."""
    if value is None or (templated and _placeholder(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        shown = value if isinstance(value, int | float) else type(value).__name__
        raise StageProblem(f"{where} must be a number (got {shown!r})")
    return float(value)


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


@dataclass(frozen=True)
class Rerank:
    """Re-score the first ``top_n`` results (all when None) by ``model`` against ``query`` (the
    first search's query when None), reading each result's text from ``text_field``; the
    re-scored ones first, best first, then those without a text, then the rest, in their order."""

    model: str
    query: str | None
    top_n: int | None
    text_field: str
    where: str  # the stage's parameters, for errors

    async def run(self, hits: list[SearchHit], score: Scorer) -> list[SearchHit]:
        head, tail = hits[: self.top_n or len(hits)], hits[self.top_n or len(hits) :]
        texts = [field_value(hit, self.text_field) for hit in head]
        scorable = [i for i, text in enumerate(texts) if isinstance(text, str) and text]
        if head and not scorable:
            fields = sorted({k for hit in head for k in hit.payload})
            raise StageProblem(
                f"{self.where}.text_field: none of the {len(head)} results has a text in payload field "
                f"{self.text_field!r} (their fields: {fields})",
                "name the payload field that holds each result's text in text_field",
            )
        scores = await score(self, [str(texts[i]) for i in scorable])
        rescored = sorted(zip(scores, scorable, strict=True), key=lambda pair: -pair[0])  # stable on ties
        kept = set(scorable)
        return [
            *(head[i].model_copy(update={"score": s, "search_score": _search_score(head[i])}) for s, i in rescored),
            *(hit for i, hit in enumerate(head) if i not in kept),
            *tail,
        ]


def _search_score(hit: SearchHit) -> float:
    return hit.score if hit.search_score is None else hit.search_score


@dataclass(frozen=True)
class Enrich:
    """Ask the LLM about each of the first ``top_n`` results: ``prompt`` with each result's
    ``{{DOC.field}}`` filled in (``image_field``'s URLs sent beside it); the answer goes to the
    payload's ``output_field``. The order of the results does not change; a result whose call
    failed, whose prompt names a field it lacks, or whose answer does not match ``output_schema``
    keeps its place with the reason in ``stage_errors``."""

    prompt: str
    output_field: str
    output_schema: dict[str, Any] | None
    model: str | None
    instruction: str | None
    image_field: str | None
    top_n: int
    temperature: float | None
    max_tokens: int | None
    where: str
    index: int = -1  # the stage's place in the retriever (set by the plan)
    stage_id: str = "llm_enrich"

    async def run(self, hits: list[SearchHit], enrich: Enrichment) -> tuple[list[SearchHit], int]:
        """The results with their answers; and how many of the first top_n failed."""
        head = hits[: self.top_n]
        items: list[EnrichItem | str] = [self._item(hit) for hit in head]
        asked = [item for item in items if isinstance(item, EnrichItem)]
        answers = iter(await enrich(self, asked) if asked else [])
        out, failed = [], 0
        for hit, item in zip(head, items, strict=True):
            error = item if isinstance(item, str) else self._answer(hit, next(answers))
            if isinstance(error, SearchHit):
                out.append(error)
                continue
            failed += 1
            message, hint = error if isinstance(error, tuple) else (error, None)
            problem = {"stage_index": self.index, "stage_id": self.stage_id, "error": message, "hint": hint}
            out.append(hit.model_copy(update={"stage_errors": [*hit.stage_errors, problem]}))
        return [*out, *hits[self.top_n :]], failed

    def _item(self, hit: SearchHit) -> EnrichItem | str:
        """The call for ``hit``, or why there is none."""
        missing: list[str] = []

        def value(match: re.Match[str]) -> str:
            found = field_value(hit, match.group(1))
            if found is None:
                missing.append(match.group(1))
                return ""
            return found if isinstance(found, str) else json.dumps(found, default=str)

        text = _DOC.sub(value, self.prompt)
        if missing:
            return f"{self.where}.prompt: the result has no field {missing[0]!r} for {{{{DOC.{missing[0]}}}}}"
        if len(text.encode()) > MAX_PROMPT_BYTES:
            return f"{self.where}.prompt: filled in for this result it is over {MAX_PROMPT_BYTES} bytes"
        images: list[str] = []
        if self.image_field is not None:
            given = field_value(hit, self.image_field)
            images = [given] if isinstance(given, str) else given if isinstance(given, list) else []
            if not images or not all(isinstance(i, str) and i for i in images):
                return f"{self.where}.image_field: the result's {self.image_field!r} holds no image URL"
        return EnrichItem(text=text, images=images)

    def _answer(self, hit: SearchHit, answer: EnrichResult) -> SearchHit | tuple[str, str | None]:
        if answer.error is not None:
            return answer.error, answer.hint
        value: Any = answer.text
        if self.output_schema is not None:
            value = answer.data
            problem = next(iter(Draft202012Validator(self.output_schema).iter_errors(value)), None)
            if problem is not None:
                at = "/".join(str(p) for p in problem.absolute_path) or "the answer"
                return (
                    f"the LLM's answer does not match {self.where}.output_schema at {at}: {problem.message}",
                    "loosen output_schema, or use a model that follows response_format json_schema",
                )
        return hit.model_copy(update={"payload": {**hit.payload, self.output_field: value}})


PostStage = Sort | Group | Limit | Rerank | Enrich
# What scores a rerank stage's texts (the use case: inference's rerankers or a plugin's query path).
Scorer = Callable[[Rerank, list[str]], Awaitable[list[float]]]
# What answers an LLM stage's calls (the use case: inference's enrich API), one result per item.
Enrichment = Callable[[Enrich, list[EnrichItem]], Awaitable[list[EnrichResult]]]


@dataclass
class StageRun:
    """What one stage did: its index in the retriever (None for the request's own limit), how many
    results came in and out, how long it took, and the results it dropped (for ``explain``)."""

    stage_index: int | None
    stage_id: str
    input_count: int | None
    output_count: int
    duration_ms: float
    dropped: list[SearchHit] = field(default_factory=list)
    note: str | None = None

    def view(self, explain: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage_index": self.stage_index,
            "stage_id": self.stage_id,
            "input_count": self.input_count,
            "output_count": self.output_count,
            "duration_ms": round(self.duration_ms, 2),
        }
        if self.note:
            out["note"] = self.note
        if explain:
            out["dropped"] = [
                {"document_id": h.document_id, "collection_id": h.collection_id, "score": h.score} for h in self.dropped
            ]
        return out


@dataclass
class Finished:
    """An execution's page of results, what each stage did, each result's rank and score after
    each stage it went through (``trace``, by (collection_id, document_id)), whether more follow."""

    hits: list[SearchHit]
    runs: list[StageRun]
    trace: dict[tuple[str, str], list[dict[str, Any]]]
    more: bool = False  # results follow the page

    def explain(self, hit: SearchHit) -> list[dict[str, Any]]:
        return self.trace.get(_key(hit), [])


def _key(hit: SearchHit) -> tuple[str, str]:
    return (hit.collection_id, hit.document_id)


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


def _rerank(params: dict[str, Any], where: str, templated: bool) -> Rerank:
    model = params.get("model", params.get("inference_name"))
    if not isinstance(model, str) or not model:
        raise StageProblem(
            f"{where}.model must name a reranker: a builtin, a cross-encoder of the model registry, "
            "or a plugin's feature_uri",
            RERANK_EXAMPLE,
        )
    query = params.get("query")
    if isinstance(query, dict):
        query = query.get("text") or query.get("value")
    if query is not None and (not isinstance(query, str) or not query):
        raise StageProblem(f"{where}.query must be text (or {{{{INPUT.x}}}})", RERANK_EXAMPLE)
    text_field = params.get("text_field", params.get("document_field", "text"))
    if not isinstance(text_field, str) or not text_field:
        raise StageProblem(f"{where}.text_field must name the payload field holding each result's text")
    top_n = count(params.get("top_n"), f"{where}.top_n", templated=templated)
    return Rerank(model, query, top_n, text_field, where)


def _enrich(sid: str, params: dict[str, Any], where: str, templated: bool) -> Enrich:
    prompt = params.get("prompt", params.get("prompt_template"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise StageProblem(f"{where}.prompt must be the text to ask about each result", LLM_EXAMPLE)
    # Checked as written (at creation): once filled in, the input's own text may hold braces.
    for match in _ANY_PLACEHOLDER.finditer(prompt) if templated else ():
        if not _DOC.fullmatch(match.group(0)) and not _INPUT.fullmatch(match.group(1)):
            raise StageProblem(
                f"{where}.prompt: {match.group(0)!r} is no placeholder this stage fills",
                "{{DOC.field}} is a result's payload field (dots for nested ones, or score / document_id); "
                "{{INPUT.x}} the execute call's input",
            )
    output_field = params.get("output_field", "llm_output")
    if not isinstance(output_field, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", output_field):
        raise StageProblem(f"{where}.output_field must be a payload field name (letters, digits, _)", LLM_EXAMPLE)
    schema = params.get("output_schema", params.get("schema"))
    if schema is not None:
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise StageProblem(
                f"{where}.output_schema must be a JSON schema of an object", '{"type": "object", "properties": {...}}'
            )
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            at = "/".join(str(p) for p in exc.path)
            raise StageProblem(
                f"{where}.output_schema{'.' + at if at else ''} is not a JSON schema: {exc.message}"
            ) from None
    texts = {}
    for name in ("model", "instruction", "image_field"):
        given = params.get(name)
        if given is not None and (not isinstance(given, str) or not given):
            raise StageProblem(f"{where}.{name} must be a non-empty string", LLM_EXAMPLE)
        texts[name] = given
    top_n = count(params.get("top_n"), f"{where}.top_n", templated=templated) or LLM_TOP_N
    if top_n > LLM_MAX_TOP_N:
        raise StageProblem(
            f"{where}.top_n is {top_n}; an LLM stage asks about at most {LLM_MAX_TOP_N} results",
            "put it after a limit, or lower top_n",
        )
    temperature = number(params.get("temperature"), f"{where}.temperature", templated=templated)
    if temperature is not None and not 0 <= temperature <= 2:
        raise StageProblem(f"{where}.temperature must be from 0 to 2 (got {temperature})")
    max_tokens = count(params.get("max_tokens"), f"{where}.max_tokens", templated=templated)
    return Enrich(
        prompt,
        output_field,
        schema,
        texts["model"],
        texts["instruction"],
        texts["image_field"],
        top_n,
        temperature,
        max_tokens,
        where,
        stage_id=sid,
    )


def rerank_stages(stages: list[dict[str, Any]]) -> list[tuple[str, Rerank]]:
    """The rerank stages of well-shaped stages (after :func:`check_stages`), each with its place."""
    found = []
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        if stage_id(stage, where) in RERANK_STAGES:
            at = f"{where}.config.parameters"
            found.append((at, _rerank(stage_params(stage, where), at, True)))
    return found


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
        elif sid in RERANK_STAGES:
            _rerank(params, at, templated)
        elif sid in LLM_STAGES:
            _enrich(sid, params, at, templated)
        else:
            raise StageProblem(f"{where}: stage {sid!r} is not supported", f"supported stages: {SUPPORTED}")
    if not searches:
        raise StageProblem(
            "a retriever needs a feature_search stage", "add a stage with config.stage_id = feature_search"
        )
    return searches


@dataclass
class ExecutionPlan:
    limit: int  # the most an execution answers (a page)
    searches: list[tuple[str, dict[str, Any]]]
    filters: list[dict[str, Any]] = field(default_factory=list)  # checked filters, all of which must hold
    after: list[tuple[int, str, PostStage]] = field(default_factory=list)  # (index, stage_id, stage), in order
    fusion: str = "rrf"
    limit_stage: int | None = None  # the limit stage folded into ``limit``, if any
    filter_stages: list[tuple[int, str]] = field(default_factory=list)
    search_stages: list[tuple[int, str]] = field(default_factory=list)
    offset: int = 0  # where the page starts

    @property
    def fetch(self) -> int:
        """How many results each search gives: the page's end and one more (whether a next page
        exists); more when a group_by will collapse them, or a rerank re-scores more."""
        wanted = max([self.offset + self.limit + 1, *(s.top_n or 0 for _, _, s in self.after if isinstance(s, Rerank))])
        grouped = any(isinstance(stage, Group) for _, _, stage in self.after)
        return min(MAX_LIMIT, wanted * GROUP_CANDIDATES if grouped else wanted)

    def cut(self, result_lists: list[list[SearchHit]]) -> list[list[SearchHit]]:
        """Each search's results within its own ``top_k`` and ``min_score``."""
        out = []
        for (_, search), hits in zip(self.searches, result_lists, strict=True):
            top_k, least = count(search.get("top_k"), "top_k"), number(search.get("min_score"), "min_score")
            kept = [h for h in hits if least is None or h.score >= least]
            out.append(kept[:top_k] if top_k else kept)
        return out

    def weights(self) -> list[float]:
        return [w if (w := number(s.get("weight"), "weight")) is not None else 1.0 for _, s in self.searches]

    async def finish(self, fused: list[SearchHit], searched: StageRun, score: Scorer, enrich: Enrichment) -> Finished:
        """The fused results through the stages after the search; the page from ``offset``, at most
        ``limit`` of them."""
        runs = [searched]
        trace: dict[tuple[str, str], list[dict[str, Any]]] = {}

        def record(run: StageRun, before: list[SearchHit], after: list[SearchHit]) -> None:
            runs.append(run)
            kept = {_key(h) for h in after}
            run.dropped = [h for h in before if _key(h) not in kept]
            for rank, hit in enumerate(after, start=1):
                step: dict[str, Any] = {"stage_index": run.stage_index, "stage_id": run.stage_id, "rank": rank}
                step["score"] = hit.score
                if hit.search_score is not None:
                    step["search_score"] = hit.search_score
                trace.setdefault(_key(hit), []).append(step)

        for rank, hit in enumerate(fused, start=1):
            trace[_key(hit)] = [
                {"stage_index": searched.stage_index, "stage_id": searched.stage_id, "rank": rank, "score": hit.score}
            ]
        for index, sid in self.filter_stages:
            runs.append(StageRun(index, sid, None, len(fused), 0.0, note="applied inside the vector search"))
        hits = fused
        for index, sid, stage in self.after:
            began = time.perf_counter()
            failed = 0
            if isinstance(stage, Rerank):
                out = await stage.run(hits, score)
            elif isinstance(stage, Enrich):
                out, failed = await stage.run(hits, enrich)
            else:
                out = stage.apply(hits)
            run = StageRun(index, sid, len(hits), len(out), (time.perf_counter() - began) * 1000)
            if failed:
                asked = min(len(hits), stage.top_n) if isinstance(stage, Enrich) else len(hits)
                run.note = f"{failed} of {asked} results failed: each has its reason in stage_errors"
            record(run, hits, out)
            hits = out
        end = self.offset + self.limit
        more = len(hits) > end
        if more or self.offset or self.limit_stage is not None:
            out = hits[self.offset : end]
            record(StageRun(self.limit_stage, "limit", len(hits), len(out), 0.0), hits, out)
            hits = out
        return Finished(hits, runs, trace, more)


def plan_execution(stages: Any, requested_limit: Any, default_limit: int) -> ExecutionPlan:
    """Stages with their placeholders filled → what to search, which filters, how many results."""
    searches = check_stages(stages, templated=False)
    limit = count(requested_limit, "limit")
    plan = ExecutionPlan(limit=0, searches=searches)
    for i, stage in enumerate(stages):
        where = f"stages[{i}]"
        sid, params = stage_id(stage, where), stage_params(stage, where)
        at = f"{where}.config.parameters"
        if sid in SEARCH_STAGES:
            top_ks = [count(s.get("top_k"), "top_k") for s in params["searches"]]
            limit = limit or count(params.get("final_top_k"), "final_top_k") or max((k or 0 for k in top_ks), default=0)
            limit = limit or None
            plan.search_stages.append((i, sid))
            if "fusion" in params:
                plan.fusion = _fusion(params, at)
        elif sid in FILTER_STAGES:
            plan.filters.extend(_filters(params, at, False))
            plan.filter_stages.append((i, sid))
        elif sid == "limit":
            cap = count(params.get("limit"), f"{at}.limit")
            if cap and plan.after:
                plan.after.append((i, sid, Limit(cap)))
            elif cap:
                limit = min(limit or MAX_LIMIT, cap)
                plan.limit_stage = i
        elif sid == "sort":
            plan.after.append((i, sid, _sort(params, at)))
        elif sid in GROUP_STAGES:
            plan.after.append((i, sid, _group(sid, params, at, False)))
        elif sid in RERANK_STAGES:
            plan.after.append((i, sid, _rerank(params, at, False)))
        elif sid in LLM_STAGES:
            plan.after.append((i, sid, replace(_enrich(sid, params, at, False), index=i)))
    plan.limit = limit or default_limit
    return plan
