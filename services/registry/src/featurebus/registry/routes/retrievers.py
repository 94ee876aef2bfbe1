"""``/v1/namespaces/{ns}/retrievers``: create, get, delete (by id or name), execute, and the
history of recent executions (``GET .../executions``)."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, model_validator

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.errors import Invalid
from featurebus.registry.input_schema import checked_schema
from featurebus.registry.paging import Listing, Page, page
from featurebus.registry.records import Retriever, RetrieverExecution
from featurebus.registry.retriever_stages import MAX_LIMIT, StageProblem, count
from featurebus.registry.usecases import retrievers
from featurebus.registry.usecases.retrievers import Execution

router = APIRouter(prefix="/v1/namespaces/{ns}/retrievers")

# The request models refuse with Invalid rather than ValueError: pydantic lets it through, so the
# 422 keeps the message and hint users and the e2e tests know ("retrievers take
# collection_identifiers, ..."), instead of pydantic's generic one.


class CreateRetriever(BaseModel):
    """``name`` (or ``retriever_name``); ``collection_identifiers``, ids or names (absent: every
    collection with the feature); ``stages``, searches first (see ``retriever_stages``);
    ``input_schema``, a JSON schema of the execute call's input (see ``input_schema``)."""

    model_config = ConfigDict(extra="ignore")
    name: str
    collection_identifiers: list[str] | None = None
    stages: list[dict[str, Any]]
    input_schema: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def checked(cls, body: Any) -> Any:
        if not isinstance(body, dict):
            raise Invalid("the body must be an object")
        if "collection_ids" in body and "collection_identifiers" not in body:
            raise Invalid(
                "retrievers take collection_identifiers, not collection_ids",
                "Add collection_identifiers to your retriever",
            )
        name = body.get("retriever_name") or body.get("name")
        if not isinstance(name, str) or not name or len(name) > 100:
            raise Invalid("name is required: a string of 1 to 100 characters", '{"name": "articles-search", ...}')
        identifiers = body.get("collection_identifiers")
        if identifiers is not None and (
            not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers)
        ):
            raise Invalid("collection_identifiers must be a list of collection ids or names (strings)")
        retrievers.checked_stages(body.get("stages"))
        schema = body.get("input_schema")
        if schema is not None:
            checked_schema(schema, body["stages"])
        return {"name": name, "collection_identifiers": identifiers, "stages": body["stages"], "input_schema": schema}


class ExecuteRetriever(BaseModel):
    """``input`` (or ``inputs``): the values of the stages' ``{{INPUT.x}}``; ``limit``: at most this
    many results (a page); ``offset``, or ``cursor`` (the previous page's ``next_cursor``): where
    the page starts; ``explain``: each result with its rank and score after each stage, and each
    stage's dropped results; ``return_vectors``: each result with the vectors it was found by;
    ``include_fields``/``exclude_fields``: which payload fields each result carries (dots for
    nested ones)."""

    model_config = ConfigDict(extra="ignore")
    input: dict[str, Any]
    limit: int | None = None
    offset: int = 0
    cursor: str | None = None
    explain: bool = False
    return_vectors: bool = False
    include_fields: list[str] | None = None
    exclude_fields: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def checked(cls, body: Any) -> Any:
        inputs = body.get("input", body.get("inputs")) if isinstance(body, dict) else None
        if not isinstance(inputs, dict):
            raise Invalid("input must be an object", '{"input": {"query": "..."}}')
        try:
            limit = count(body.get("limit"), "limit")
        except StageProblem as exc:
            raise Invalid(f"{exc} (after filling in input)", exc.hint) from None
        for flag in ("explain", "return_vectors"):
            if not isinstance(body.get(flag, False), bool):
                raise Invalid(f"{flag} must be true or false", f'{{"input": {{...}}, "{flag}": true}}')
        offset = body.get("offset", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_LIMIT:
            raise Invalid(f"offset must be a whole number from 0 to {MAX_LIMIT}", '{"offset": 20, "limit": 10}')
        cursor = body.get("cursor")
        if cursor is not None and (not isinstance(cursor, str) or len(cursor) > 200):
            raise Invalid("cursor must be the next_cursor of a previous page", "pass it as the API gave it")
        if cursor is not None and "offset" in body:
            raise Invalid("give offset or cursor, not both", "a cursor knows its offset")
        for name in ("include_fields", "exclude_fields"):
            given = body.get(name)
            if given is not None and (
                not isinstance(given, list) or not all(isinstance(f, str) and f for f in given) or len(given) > 100
            ):
                raise Invalid(f"{name} must list payload field names (dots for nested ones)", f'"{name}": ["title"]')
        return {
            **{k: body[k] for k in ("explain", "return_vectors", "include_fields") if k in body},
            "input": inputs,
            "limit": limit,
            "offset": offset,
            "cursor": cursor,
            "exclude_fields": body.get("exclude_fields") or [],
        }


class RetrieverView(BaseModel):
    retriever_id: str
    retriever_name: str
    name: str
    collection_identifiers: list[str] | None
    stages: list[dict[str, Any]]
    input_schema: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, r: Retriever) -> RetrieverView:
        return cls(
            retriever_id=r.id,
            retriever_name=r.retriever_name,
            name=r.retriever_name,
            collection_identifiers=r.collection_ids,
            stages=r.stages,
            input_schema=r.input_schema,
            created_at=r.created_at,
        )


class Deleted(BaseModel):
    deleted: bool = True
    retriever_id: str


class Results(BaseModel):
    """One page of hits, best first: each its payload's fields (or those asked for) with
    ``document_id``, ``collection_id``, ``score`` (and ``search_score`` once a rerank re-scored it;
    ``stage_errors`` when a stage could not do its work for it, e.g. an LLM call that failed;
    ``vectors``, ``explain`` when asked); what each stage did (``stage_statistics``); where the
    page is (``pagination``)."""

    results: list[dict[str, Any]]
    retriever_id: str
    execution_time_ms: float
    stage_statistics: list[dict[str, Any]]
    pagination: dict[str, Any]

    @classmethod
    def of(cls, e: Execution, body: ExecuteRetriever | None = None) -> Results:
        body = body or ExecuteRetriever(input={})
        results = []
        for h in e.hits:
            result = {
                **_projected(h.payload, body.include_fields, body.exclude_fields),
                "document_id": h.document_id,
                "collection_id": h.collection_id,
                "score": h.score,
            }
            if h.search_score is not None:
                result["search_score"] = h.search_score
            if h.stage_errors:
                result["stage_errors"] = h.stage_errors
            if body.return_vectors:
                result["vectors"] = h.vectors or {}
            if body.explain:
                result["explain"] = e.finished.explain(h)
            results.append(result)
        return cls(
            results=results,
            retriever_id=e.retriever_id,
            execution_time_ms=e.execution_time_ms,
            stage_statistics=[run.view(body.explain) for run in e.finished.runs],
            pagination={"offset": e.offset, "limit": len(e.hits), "next_cursor": e.next_cursor},
        )


def _projected(payload: dict[str, Any], include: list[str] | None, exclude: list[str]) -> dict[str, Any]:
    """The payload with only the ``include`` fields (all when None), without the ``exclude`` ones."""
    if include is not None:
        kept: dict[str, Any] = {}
        for name in include:
            value, found = _at(payload, name.split("."))
            if found:
                _put(kept, name.split("."), value)
        payload = kept
    else:
        payload = copy.deepcopy(payload) if any("." in name for name in exclude) else dict(payload)
    for name in exclude:
        *parents, last = name.split(".")
        holder, found = _at(payload, parents)
        if found and isinstance(holder, dict):
            holder.pop(last, None)
    return payload


def _at(value: Any, path: list[str]) -> tuple[Any, bool]:
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def _put(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value


class ExecutionView(BaseModel):
    """One kept execution: its input, how it ended (``error``: what the caller was answered), what each stage did."""

    execution_id: str
    retriever_id: str
    status: str
    inputs: dict[str, Any]
    limit: int | None
    result_count: int
    execution_time_ms: float
    stage_statistics: list[dict[str, Any]]
    error: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, e: RetrieverExecution) -> ExecutionView:
        return cls(
            execution_id=e.id,
            retriever_id=e.retriever_id,
            status=e.status,
            inputs=e.inputs,
            limit=e.limit,
            result_count=e.result_count,
            execution_time_ms=e.execution_time_ms,
            stage_statistics=e.stage_statistics,
            error=e.error,
            created_at=e.created_at,
        )


@router.post("", status_code=201)
async def create_retriever(
    ns: str, body: CreateRetriever, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> RetrieverView:
    made = await retrievers.create_retriever(
        c, who, ns, body.name, body.collection_identifiers, body.stages, body.input_schema
    )
    return RetrieverView.of(made)


@router.get("/{retriever_id}")
async def get_retriever(
    ns: str, retriever_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> RetrieverView:
    return RetrieverView.of(await retrievers.get_retriever(c, who, ns, retriever_id))


@router.delete("/{retriever_id}")
async def delete_retriever(
    ns: str, retriever_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Deleted:
    return Deleted(retriever_id=(await retrievers.delete_retriever(c, who, ns, retriever_id)).id)


@router.post("/{retriever_id}/execute")
async def execute(
    ns: str, retriever_id: str, body: ExecuteRetriever, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Results:
    execution = await retrievers.execute_retriever(
        c,
        who,
        ns,
        retriever_id,
        body.input,
        body.limit,
        offset=body.offset,
        cursor=body.cursor,
        with_vectors=body.return_vectors,
    )
    return Results.of(execution, body)


@router.get("/{retriever_id}/executions")
async def list_executions(
    ns: str, retriever_id: str, p: Page = Depends(page), who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Listing[ExecutionView]:
    """The retriever's recent executions (the last ``FEATUREBUS_RETRIEVER_HISTORY``), newest first."""
    found, total = await retrievers.list_executions(c, who, ns, retriever_id, p.offset, p.limit)
    return Listing.of([ExecutionView.of(e) for e in found], total, p)
