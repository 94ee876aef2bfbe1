"""Retrievers: stored searches over a namespace's collections, executed by inference and the indexer.

Creating one checks its stages' shape and that each ``feature_uri`` names a feature of a plugin of
the namespace, and that each rerank stage names a reranker that is there. Executing one fills in
the caller's input, asks inference to embed the query texts and the indexer to search with the
vectors, directly (``c.queries``: the internal APIs, each waited for up to
``retrieval_timeout_s``), fuses the hits of several searches, and runs the stages after the search
(a rerank asks inference's rerankers, or embeds the candidates with a plugin's query path; an
LLM stage asks inference to call the operator's LLM provider for each result).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from featurebus.common import ids
from featurebus.common.model_store import blob_key, is_cross_encoder
from featurebus.common.objectstore import ObjectMissing
from featurebus.common.queries import (
    BUILTIN_RERANKERS,
    EmbedRequest,
    EnrichItem,
    EnrichRequest,
    EnrichResult,
    LikeDocument,
    QueryText,
    RerankRequest,
    SearchHit,
    SearchRequest,
    VectorSearch,
)
from featurebus.registry.auth import Principal, resolve_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import DomainError, Invalid, NotFound
from featurebus.registry.feature_uri import parse_feature_uri
from featurebus.registry.fusion import fuse
from featurebus.registry.input_schema import checked_input, checked_schema
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.plugin_readiness import plugin_ref
from featurebus.registry.plugin_resolution import resolve_plugin
from featurebus.registry.query_blobs import BLOB_QUERY_HINT, QueryBlobs, is_blob_query
from featurebus.registry.query_services import Refused, Unreachable
from featurebus.registry.records import Namespace, Plugin, Retriever, RetrieverExecution
from featurebus.registry.retriever_stages import (
    MAX_LIMIT,
    Enrich,
    ExecutionPlan,
    Finished,
    Rerank,
    StageProblem,
    StageRun,
    check_stages,
    plan_execution,
    rerank_stages,
)
from featurebus.registry.templates import MissingInput, fill
from featurebus.registry.usecases.collections import resolve_collection

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_QUERY_BYTES",
    "Execution",
    "NoAnswer",
    "SearchFailed",
    "answer_of",
    "checked_stages",
    "create_retriever",
    "delete_retriever",
    "execute_retriever",
    "get_retriever",
    "list_executions",
]

DEFAULT_LIMIT = 10
MAX_QUERY_BYTES = 512 * 1024  # the embed request of one execution (each query is also limited on its own)

Search = tuple[str, dict[str, Any]]  # a search of the stages, with the field name it is known by


class NoAnswer(DomainError):
    """No answer came in time: inference or the indexer is down or busy (the detail names which)."""

    status = 504


class SearchFailed(DomainError):
    """The search failed downstream (embedding or index), as the service's answer says."""

    status = 502


@dataclass(frozen=True)
class Execution:
    """What an execution found: one page of hits, best first, from ``offset``; what each stage
    did; and the cursor of the next page (None when there is none)."""

    retriever_id: str
    hits: list[SearchHit]
    finished: Finished
    execution_time_ms: float
    offset: int = 0
    next_cursor: str | None = None


def checked_stages(stages: Any) -> list[Search]:
    """The searches of well-shaped stages (placeholders allowed); Invalid naming the stage and field."""
    try:
        return check_stages(stages)
    except StageProblem as exc:
        raise Invalid(str(exc), exc.hint) from None


async def create_retriever(
    c: Ctx,
    who: Principal,
    ns: str,
    name: str,
    collection_identifiers: list[str] | None,
    stages: list[dict[str, Any]],
    input_schema: dict[str, Any] | None = None,
) -> Retriever:
    """Store a retriever; ``collection_identifiers`` None searches every collection that has the
    feature; ``input_schema`` (a JSON schema) defines and checks the execute call's input."""
    namespace = await resolve_namespace(c.tables, who, ns)
    collections = None
    if collection_identifiers is not None:
        collections = [await resolve_collection(c.tables, namespace, i) for i in collection_identifiers]
    for where, search in checked_stages(stages):
        plugin, feature = await _feature(c, namespace, search["feature_uri"], f"{where}.feature_uri")
        if collections is not None and not any(
            v.name == feature and v.plugin_id == plugin.plugin_id for col in collections for v in col.vector_indexes
        ):
            has = sorted({v.feature_uri or v.name for col in collections for v in col.vector_indexes})
            raise Invalid(
                f"{where}.feature_uri: none of the retriever's collections has the feature {search['feature_uri']!r}; "
                f"they have {has}",
                "search a feature of these collections, or add a collection that has it to collection_identifiers",
            )
    collection_ids = [col.id for col in collections] if collections is not None else None
    for where, rerank in rerank_stages(stages):
        await _check_reranker(c, namespace, rerank.model, f"{where}.model")
    if json_size(stages) > MAX_STORED_JSON:
        raise Invalid(f"stages are {json_size(stages)} bytes as JSON; at most {MAX_STORED_JSON}")
    if input_schema is not None:
        checked_schema(input_schema, stages)
        if json_size(input_schema) > MAX_STORED_JSON:
            raise Invalid(f"input_schema is {json_size(input_schema)} bytes as JSON; at most {MAX_STORED_JSON}")
    retriever = Retriever(
        id=ids.new_id("ret"),
        org_id=who.org_id,
        namespace_id=namespace.id,
        retriever_name=name,
        collection_ids=collection_ids,
        stages=stages,
        input_schema=input_schema,
    )
    await c.tables.retrievers.insert(retriever)
    return retriever


async def get_retriever(c: Ctx, who: Principal, ns: str, retriever: str) -> Retriever:
    """The retriever named by id or name in the namespace; NotFound otherwise."""
    return (await _namespace_and_retriever(c, who, ns, retriever))[1]


async def delete_retriever(c: Ctx, who: Principal, ns: str, retriever: str) -> Retriever:
    """Delete the retriever, and its history after the answer."""
    found = await get_retriever(c, who, ns, retriever)
    await c.tables.retrievers.delete(found.id)

    async def forget() -> None:
        c.history.forget(found.id)
        old = await c.tables.retriever_executions.find(retriever_id=found.id)
        await c.tables.retriever_executions.delete_many([e.id for e in old])

    c.later(forget(), f"deleting the history of retriever {found.id}")
    return found


async def execute_retriever(
    c: Ctx,
    who: Principal,
    ns: str,
    retriever: str,
    inputs: dict[str, Any],
    limit: int | None,
    *,
    offset: int = 0,
    cursor: str | None = None,
    with_vectors: bool = False,
) -> Execution:
    """Fill in ``inputs``, embed the queries, search with the vectors, fuse the hits and run the
    stages after the search; answer the page at ``offset`` (or where ``cursor``, which an earlier
    page of the same input and limit gave, points). The execution is kept in the retriever's
    history, failed or not."""
    began = time.perf_counter()
    namespace, found = await _namespace_and_retriever(c, who, ns, retriever)
    try:
        done = await _execute(c, namespace, found, inputs, limit, offset, cursor, with_vectors, began)
    except DomainError as exc:
        ms = (time.perf_counter() - began) * 1000
        error = {"status": exc.status, "detail": exc.detail, "hint": exc.hint}
        _remember(c, found, inputs, limit, "failed", ms, error=error)
        raise
    runs = [run.view(explain=False) for run in done.finished.runs]
    _remember(c, found, inputs, limit, "completed", done.execution_time_ms, len(done.hits), runs)
    return done


async def list_executions(
    c: Ctx, who: Principal, ns: str, retriever: str, offset: int, limit: int
) -> tuple[list[RetrieverExecution], int]:
    """The retriever's kept executions, newest first, from ``offset``; and how many are kept."""
    _, found = await _namespace_and_retriever(c, who, ns, retriever)
    _, total = await c.tables.retriever_executions.page(0, 1, retriever_id=found.id)
    end = total - offset  # the page ends there, oldest first
    if end <= 0:
        return [], total
    page, _ = await c.tables.retriever_executions.page(max(0, end - limit), min(limit, end), retriever_id=found.id)
    return page[::-1], total


MAX_KEPT_INPUT = 16 * 1024  # bytes of JSON: a larger input is kept as its size only


def _remember(
    c: Ctx,
    retriever: Retriever,
    inputs: dict[str, Any],
    limit: int | None,
    status: str,
    ms: float,
    count: int = 0,
    runs: list[dict[str, Any]] | None = None,
    error: dict[str, Any] | None = None,
) -> None:
    """Keep the execution in the retriever's history, after the answer; drop the oldest beyond
    ``retriever_history`` (every tenth execution, so that pruning is rare: :mod:`featurebus.registry.execution_history`)."""
    keep = c.settings.retriever_history
    if keep == 0:
        return
    size = json_size(inputs)
    record = RetrieverExecution(
        id=ids.ordered_id("rex"),
        org_id=retriever.org_id,
        namespace_id=retriever.namespace_id,
        retriever_id=retriever.id,
        inputs=inputs
        if size <= MAX_KEPT_INPUT
        else {"_not_kept": f"{size} bytes of input, more than {MAX_KEPT_INPUT}"},
        limit=limit,
        status=status,
        result_count=count,
        execution_time_ms=round(ms, 1),
        stage_statistics=runs or [],
        error=error,
    )

    c.later(
        c.history.record(c.tables.retriever_executions, record, keep),
        f"keeping an execution of retriever {retriever.id}",
    )


async def _execute(
    c: Ctx,
    namespace: Namespace,
    found: Retriever,
    inputs: dict[str, Any],
    limit: int | None,
    offset: int,
    cursor: str | None,
    with_vectors: bool,
    began: float,
) -> Execution:
    if found.input_schema is not None:
        inputs = checked_input(found.input_schema, inputs)
    try:
        plan = plan_execution(fill(found.stages, inputs), limit, DEFAULT_LIMIT)
    except MissingInput as exc:
        key = exc.args[0]
        raise Invalid(f"input.{key} is required by this retriever", f'{{"input": {{"{key}": ...}}}}') from None
    except StageProblem as exc:
        raise Invalid(f"{exc} (after filling in input)", exc.hint) from None
    page, fingerprint = plan.limit, _fingerprint(found.id, inputs, plan.limit)
    if cursor is not None:
        offset = _offset_of(cursor, fingerprint)
    if offset + page > MAX_LIMIT:
        raise Invalid(
            f"offset {offset} + limit {page} goes past the {MAX_LIMIT} results an execution can page through",
            "narrow the query (a filter stage) rather than paging further",
        )
    plan.offset = offset
    blobs = QueryBlobs.of(c, namespace)
    try:
        return await _run(c, namespace, found, plan, fingerprint, with_vectors, began, blobs)
    finally:
        if blobs.kept:
            c.later(blobs.forget(), "deleting the blobs of an execution's queries")


async def _run(
    c: Ctx,
    namespace: Namespace,
    found: Retriever,
    plan: ExecutionPlan,
    fingerprint: str,
    with_vectors: bool,
    began: float,
    blobs: QueryBlobs,
) -> Execution:
    """Embed the queries, search, fuse, and run the stages after the search (``_execute`` planned it)."""
    offset, page = plan.offset, plan.limit
    searched_at = time.perf_counter()
    searches = [await _search_spec(c, namespace, found, where, search, blobs) for where, search in plan.searches]
    request_id = uuid.uuid4().hex
    texts = [s.query for s in searches if s.query is not None]  # texts and blobs
    vectors: list[list[float]] = []
    if texts:
        embed = EmbedRequest(request_id=request_id, namespace_id=namespace.id, queries=texts)
        if len(embed.model_dump_json()) > MAX_QUERY_BYTES:
            raise Invalid(f"input: the queries add up to more than {MAX_QUERY_BYTES} bytes", "send shorter queries")
        vectors = (await answer_of("inference", c.queries.embed(embed))).vectors
        if len(vectors) != len(texts):
            raise SearchFailed(f"inference answered {len(vectors)} vectors for {len(texts)} queries")
    embedded = iter(vectors)
    search = SearchRequest(
        request_id=request_id,
        namespace_id=namespace.id,
        searches=[
            VectorSearch(
                feature_name=s.feature_name,
                collection_ids=s.collection_ids,
                vector=next(embedded) if s.query is not None else [],
                like=s.like,
            )
            for s in searches
        ],
        limit=plan.fetch,
        where=plan.filters,
        with_vectors=with_vectors,
    )
    answer = await answer_of("indexer", c.queries.search(search))
    if len(answer.hits) != len(searches):
        raise SearchFailed(f"the indexer answered {len(answer.hits)} result lists for {len(searches)} searches")
    fused = fuse(plan.cut(answer.hits), plan.fetch, plan.fusion, plan.weights())
    index, sid = plan.search_stages[0]
    searched = StageRun(index, sid, None, len(fused), (time.perf_counter() - searched_at) * 1000)

    async def score(rerank: Rerank, texts: list[str]) -> list[float]:
        query = rerank.query or next((s.query.text for s in searches if s.query is not None and s.query.text), None)
        if query is None:
            raise Invalid(f"{rerank.where}.query: the searches have no text query to rerank against", RERANK_QUERY_HINT)
        if rerank.model.startswith("mixpeek://"):
            return await _plugin_scores(c, namespace, found, rerank, query, texts, request_id)
        asked = RerankRequest(
            request_id=request_id, namespace_id=namespace.id, model=rerank.model, query=query, documents=texts
        )
        scores = (await answer_of("inference", c.queries.rerank(asked))).scores
        if len(scores) != len(texts):
            raise SearchFailed(f"inference answered {len(scores)} rerank scores for {len(texts)} results")
        return scores

    async def enrich(stage: Enrich, items: list[EnrichItem]) -> list[EnrichResult]:
        asked = EnrichRequest(
            request_id=request_id,
            namespace_id=namespace.id,
            items=items,
            instruction=stage.instruction,
            model=stage.model,
            output_schema=stage.output_schema,
            temperature=stage.temperature,
            max_tokens=stage.max_tokens,
        )
        results = (await answer_of("inference", c.queries.enrich(asked))).results
        if len(results) != len(items):
            raise SearchFailed(f"inference answered {len(results)} LLM results for {len(items)} results")
        return results

    try:
        finished = await plan.finish(fused, searched, score, enrich)
    except StageProblem as exc:
        raise Invalid(str(exc), exc.hint) from None
    more = finished.more and offset + page < MAX_LIMIT
    next_cursor = _cursor(offset + page, fingerprint) if more else None
    ms = round((time.perf_counter() - began) * 1000, 1)
    return Execution(found.id, finished.hits, finished, ms, offset, next_cursor)


def _fingerprint(retriever_id: str, inputs: dict[str, Any], page: int) -> str:
    """What a cursor is valid for: this retriever, this input, this page size."""
    given = json.dumps([retriever_id, inputs, page], sort_keys=True, default=str)
    return hashlib.sha256(given.encode()).hexdigest()[:16]


def _cursor(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode().rstrip("=")


def _offset_of(cursor: str, fingerprint: str) -> int:
    try:
        given = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, made_for = given["o"], given["f"]
    except (ValueError, TypeError, KeyError):
        raise Invalid("cursor is not one this API gave", "pass the next_cursor of the previous page as is") from None
    if made_for != fingerprint or not isinstance(offset, int) or offset < 0:
        raise Invalid(
            "cursor was given for another retriever, input or limit",
            "page with the same input and limit as the first page, or start again without a cursor",
        )
    return offset


RERANK_QUERY_HINT = '"query": "{{INPUT.query}}" in the rerank stage\'s parameters'


@dataclass(frozen=True)
class _ResolvedSearch:
    """One search of a plan: the text for inference to embed, or the stored document whose vector
    the indexer searches with; the collections for the indexer."""

    feature_name: str
    collection_ids: list[str]
    query: QueryText | None = None
    like: LikeDocument | None = None


Answer = TypeVar("Answer")


async def answer_of(service: str, call: Awaitable[Answer]) -> Answer:
    """The service's answer; NoAnswer when it gives none, SearchFailed with its reason when it refuses."""
    try:
        return await call
    except Unreachable as exc:
        raise NoAnswer(
            f"no answer from the {service} service at {exc.url}: {exc.why}",
            f"the {service} service may be down or busy; check its log (svc-{service}.log) and retry",
        ) from None
    except Refused as exc:
        detail = exc.detail if exc.status == 422 else f"the {service} service answered {exc.status}: {exc.detail}"
        raise SearchFailed(detail, exc.hint) from None


async def _namespace_and_retriever(c: Ctx, who: Principal, ns: str, ident: str) -> tuple[Namespace, Retriever]:
    namespace = await resolve_namespace(c.tables, who, ns)
    found = await c.tables.retrievers.find_one(id=ident, namespace_id=namespace.id)
    if found is None:
        found = await c.tables.retrievers.find_one(namespace_id=namespace.id, retriever_name=ident)
    if found is None:
        raise NotFound(f"retriever {ident!r} not found")
    return namespace, found


async def _feature(c: Ctx, namespace: Namespace, uri: str, where: str) -> tuple[Plugin, str]:
    """The plugin of the namespace and the feature that ``uri`` names; Invalid naming ``where``."""
    try:
        parsed = parse_feature_uri(uri)
    except ValueError as exc:
        raise Invalid(f"{where}: {exc}") from None
    plugin = await resolve_plugin(c.tables, namespace, parsed.plugin_id)
    if plugin is None or plugin.manifest is None:
        raise Invalid(f"{where}: plugin {parsed.plugin_id} is not in this namespace (or not scanned yet)")
    names = [f.feature_name for f in plugin.manifest.features]
    if parsed.feature not in names:
        raise Invalid(f"{where}: plugin {parsed.plugin_id} has no feature {parsed.feature!r}; it has {names}")
    return plugin, parsed.feature


QUERY_HINT = (
    '"query": "{{INPUT.query}}" (a text), {"document_id": "{{INPUT.like}}"} (more like a stored document), or '
    + BLOB_QUERY_HINT
)


def _query_text(c: Ctx, where: str, query: Any) -> str:
    if isinstance(query, dict):
        query = query.get("text") or query.get("value")
    if not isinstance(query, str) or not query:
        raise Invalid(f"{where}.query: each search needs a text query, a document_id or a blob", QUERY_HINT)
    size, most = len(query.encode()), c.settings.max_inline_text_bytes
    if size > most:
        raise Invalid(f"{where}.query is {size} bytes; a query is limited to {most}", "send a shorter query")
    return query


async def _liked(c: Ctx, namespace: Namespace, where: str, query: dict[str, Any], plugin: Plugin) -> LikeDocument:
    """A "more like this" query: the stored document (and its collection, by id or name, if given)."""
    document_id, collection = query.get("document_id"), query.get("collection_id") or query.get("collection")
    if not isinstance(document_id, str) or not document_id:
        raise Invalid(f"{where}.query.document_id must be a document's id", QUERY_HINT)
    if collection is not None and not isinstance(collection, str):
        raise Invalid(f"{where}.query.collection_id must be a collection id or name")
    collection_id = (await resolve_collection(c.tables, namespace, collection)).id if collection else None
    return LikeDocument(document_id=document_id, plugin_id=plugin.plugin_id, collection_id=collection_id)


async def _check_reranker(c: Ctx, namespace: Namespace, model: str, where: str) -> None:
    """A builtin reranker, a cross-encoder of the model registry, or a feature of a plugin of the
    namespace (its query path embeds the query and the results); Invalid naming ``where`` and
    what is available otherwise."""
    if model in BUILTIN_RERANKERS:
        return
    if model.startswith("mixpeek://"):
        await _feature(c, namespace, model, where)
        return
    imported = await c.tables.models.find(namespace_id=None, status="ready")
    found = next((m for m in imported if m.name == model), None)
    if found is None:
        cross_encoders = sorted([m.name for m in imported if await _is_cross_encoder(c, m)])
        available = [*BUILTIN_RERANKERS, *cross_encoders]
        raise Invalid(
            f"{where}: reranker {model!r} is not installed; available: {available}, or a plugin's "
            "feature_uri (mixpeek://name@version/feature)",
            f"import a cross-encoder first: featurebus models import {model} --from <its directory or HF cache>",
        )
    if not await _is_cross_encoder(c, found):
        raise Invalid(
            f"{where}: model {model!r} is not a cross-encoder (its config.json names no "
            "...ForSequenceClassification architecture)",
            f"rerank with a cross-encoder (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2) or {BUILTIN_RERANKERS[0]}",
        )


async def _is_cross_encoder(c: Ctx, model: Any) -> bool:
    config = next((f for f in model.files if f.path == "config.json"), None)
    if config is None:
        return False
    try:
        raw = await c.store.get_bytes(c.store.uri(blob_key(None, config.sha256)))
        return is_cross_encoder(json.loads(raw))
    except (ObjectMissing, ValueError):
        return False


async def _plugin_scores(
    c: Ctx, namespace: Namespace, retriever: Retriever, rerank: Rerank, query: str, texts: list[str], request_id: str
) -> list[float]:
    """The cosine of the query's and each text's vector, both embedded by the plugin's query path."""
    plugin, feature = await _feature(c, namespace, rerank.model, f"{rerank.where}.model")
    collection_ids = retriever.collection_ids or [
        col.id for col in await c.tables.collections.find(namespace_id=namespace.id)
    ]
    ref = plugin_ref(plugin, await _parameters(c, collection_ids, plugin))
    queries = [QueryText(plugin=ref, feature_name=feature, text=t, deployment=plugin.serving) for t in [query, *texts]]
    embed = EmbedRequest(request_id=request_id, namespace_id=namespace.id, queries=queries)
    if len(embed.model_dump_json()) > MAX_QUERY_BYTES:
        raise Invalid(
            f"{rerank.where}: the results' texts add up to more than {MAX_QUERY_BYTES} bytes to embed",
            "rerank fewer results (top_n)",
        )
    vectors = (await answer_of("inference", c.queries.embed(embed))).vectors
    if len(vectors) != len(queries):
        raise SearchFailed(f"inference answered {len(vectors)} vectors for {len(queries)} texts")
    first = vectors[0]
    return [_cosine(first, v) for v in vectors[1:]]


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0


async def _parameters(c: Ctx, collection_ids: list[str], plugin: Plugin) -> dict[str, Any]:
    """The plugin's parameters as the first of the collections using it set them."""
    for cid in collection_ids:
        col = await c.tables.collections.get(cid)
        match = next(
            (fe for fe in (col.feature_extractors if col else []) if fe.get("plugin_id") == plugin.plugin_id), None
        )
        if match:
            return match.get("parameters") or {}
    return {}


async def _search_spec(
    c: Ctx, namespace: Namespace, retriever: Retriever, where: str, search: dict[str, Any], blobs: QueryBlobs
) -> _ResolvedSearch:
    plugin, feature = await _feature(c, namespace, search["feature_uri"], f"{where}.feature_uri")
    given = search.get("query")
    like = (
        await _liked(c, namespace, where, given, plugin) if isinstance(given, dict) and "document_id" in given else None
    )
    blob = await blobs.blob(where, given) if like is None and is_blob_query(given) else None
    text = None if like or blob else _query_text(c, where, given)
    if retriever.collection_ids is not None:
        collection_ids = retriever.collection_ids
    else:
        every = await c.tables.collections.find(namespace_id=namespace.id)
        collection_ids = [
            col.id
            for col in every
            if any(v.name == feature and v.plugin_id == plugin.plugin_id for v in col.vector_indexes)
        ]
    if not collection_ids:
        raise Invalid(
            f"{where}.feature_uri: no collection of this namespace has the feature {feature!r}",
            "create a collection with the plugin first",
        )
    if like is not None:
        return _ResolvedSearch(feature, collection_ids, like=like)
    parameters = await _parameters(c, collection_ids, plugin)
    query = QueryText(
        plugin=plugin_ref(plugin, parameters),
        feature_name=feature,
        text=text or "",
        blob=blob,
        deployment=plugin.serving,
    )
    return _ResolvedSearch(feature, collection_ids, query=query)
