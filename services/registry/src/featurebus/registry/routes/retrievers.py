"""Retrievers: feature_search over collections, then filter and limit stages."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request

from featurebus.common import ids
from featurebus.common.events import RetrievalRequested, SearchSpec
from featurebus.registry.auth import Principal, principal, resolve_namespace
from featurebus.registry.batch_start import plugin_ref
from featurebus.registry.body_guard import json_of
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import CollectionDoc, NamespaceDoc, PluginDoc, RetrieverDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.feature_uri import parse_feature_uri
from featurebus.registry.fusion import fuse
from featurebus.registry.json_body import MAX_STORED_JSON, json_size
from featurebus.registry.retriever_stages import StageProblem, check_stages, plan_execution
from featurebus.registry.routes.collections import resolve_collection
from featurebus.registry.templates import MissingInput, fill

router = APIRouter(prefix="/v1/namespaces/{ns}/retrievers")

DEFAULT_LIMIT = 10
MAX_EVENT_BYTES = 512 * 1024  # a RetrievalRequested stays well under Kafka's 1 MiB


def retriever_view(r: RetrieverDoc) -> dict[str, Any]:
    return {
        "retriever_id": r.id,
        "retriever_name": r.retriever_name,
        "name": r.retriever_name,
        "collection_identifiers": r.collection_ids,
        "stages": r.stages,
        "created_at": r.created_at,
    }


async def _validate_stages(namespace: NamespaceDoc, stages: Any) -> None:
    try:
        searches = check_stages(stages)
    except StageProblem as exc:
        raise ApiError(422, str(exc), exc.hint) from None
    for where, search in searches:
        await _resolve_feature(namespace, search["feature_uri"], f"{where}.feature_uri")


async def _resolve_feature(namespace: NamespaceDoc, uri: str, where: str) -> tuple[PluginDoc, str]:
    try:
        parsed = parse_feature_uri(uri)
    except ValueError as exc:
        raise ApiError(422, f"{where}: {exc}") from None
    plugin = await PluginDoc.get(f"{namespace.id}/{parsed.plugin_id}")
    if plugin is None or plugin.manifest is None:
        raise ApiError(422, f"{where}: plugin {parsed.plugin_id} is not in this namespace (or not scanned yet)")
    names = [f.feature_name for f in plugin.manifest.features]
    if parsed.feature not in names:
        raise ApiError(422, f"{where}: plugin {parsed.plugin_id} has no feature {parsed.feature!r}; it has {names}")
    return plugin, parsed.feature


@router.post("", status_code=201)
async def create_retriever(ns: str, request: Request, who: Principal = Depends(principal)) -> dict[str, Any]:
    namespace = await resolve_namespace(who, ns)
    body = json_of(request)
    if not isinstance(body, dict):
        raise ApiError(422, "the body must be an object")
    if "collection_ids" in body and "collection_identifiers" not in body:
        raise ApiError(
            422,
            "retrievers take collection_identifiers, not collection_ids",
            "Add collection_identifiers to your retriever",
        )
    name = body.get("retriever_name") or body.get("name")
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ApiError(422, "name is required: a string of 1 to 100 characters", '{"name": "articles-search", ...}')
    identifiers = body.get("collection_identifiers")
    collection_ids = None
    if identifiers is not None:
        if not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
            raise ApiError(422, "collection_identifiers must be a list of collection ids or names (strings)")
        collection_ids = [(await resolve_collection(namespace, i)).id for i in identifiers]
    await _validate_stages(namespace, body.get("stages"))
    if json_size(body["stages"]) > MAX_STORED_JSON:
        raise ApiError(422, f"stages are {json_size(body['stages'])} bytes as JSON; at most {MAX_STORED_JSON}")
    doc = RetrieverDoc(
        id=ids.new_id("ret"),
        org_id=who.org_id,
        namespace_id=namespace.id,
        retriever_name=name,
        collection_ids=collection_ids,
        stages=body["stages"],
    )
    await doc.insert()
    return retriever_view(doc)


async def _get(who: Principal, ns: str, retriever_id: str) -> tuple[NamespaceDoc, RetrieverDoc]:
    namespace = await resolve_namespace(who, ns)
    doc = await RetrieverDoc.get(retriever_id)
    if doc is None or doc.namespace_id != namespace.id:
        doc = await RetrieverDoc.find_one(
            RetrieverDoc.namespace_id == namespace.id, RetrieverDoc.retriever_name == retriever_id
        )
    if doc is None:
        raise ApiError(404, f"retriever {retriever_id!r} not found")
    return namespace, doc


@router.get("/{retriever_id}")
async def get_retriever(ns: str, retriever_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return retriever_view((await _get(who, ns, retriever_id))[1])


@router.delete("/{retriever_id}")
async def delete_retriever(ns: str, retriever_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    _, doc = await _get(who, ns, retriever_id)
    await doc.delete()
    return {"deleted": True, "retriever_id": doc.id}


@router.post("/{retriever_id}/execute")
async def execute(
    ns: str, retriever_id: str, request: Request, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    began = time.perf_counter()
    namespace, retriever = await _get(who, ns, retriever_id)
    body = json_of(request)
    inputs = body.get("input", body.get("inputs")) if isinstance(body, dict) else None
    if not isinstance(inputs, dict):
        raise ApiError(422, "input must be an object", '{"input": {"query": "..."}}')
    try:
        plan = plan_execution(fill(retriever.stages, inputs), body.get("limit"), DEFAULT_LIMIT)
    except MissingInput as exc:
        raise ApiError(
            422, f"input.{exc.args[0]} is required by this retriever", f'{{"input": {{"{exc.args[0]}": ...}}}}'
        ) from None
    except StageProblem as exc:
        raise ApiError(422, f"{exc} (after filling in input)", exc.hint) from None
    searches = [await _search_spec(c, namespace, retriever, where, search) for where, search in plan.searches]
    limit, filters = plan.limit, plan.filters
    request_id = uuid.uuid4().hex
    event = RetrievalRequested(
        request_id=request_id,
        org_id=who.org_id,
        namespace_id=namespace.id,
        searches=searches,
        limit=limit,
        filters=filters,
    )
    if len(event.model_dump_json()) > MAX_EVENT_BYTES:
        raise ApiError(422, f"input: the queries add up to more than {MAX_EVENT_BYTES} bytes", "send shorter queries")
    waiting = c.answers.expect(request_id)
    try:
        await c.bus.publish(event, key=request_id)
        answer = await asyncio.wait_for(waiting, c.settings.retrieval_timeout_s)
    except TimeoutError:
        raise ApiError(
            504,
            f"no answer within {c.settings.retrieval_timeout_s:.0f}s",
            "the inference or indexer service may be down or busy; check their logs and retry",
        ) from None
    finally:
        c.answers.forget(request_id)
    if answer.error:
        raise ApiError(502, answer.error)
    hits = fuse(answer.hits, limit)
    return {
        "results": [
            {**h.payload, "document_id": h.document_id, "collection_id": h.collection_id, "score": h.score}
            for h in hits
        ],
        "retriever_id": retriever.id,
        "execution_time_ms": round((time.perf_counter() - began) * 1000, 1),
    }


async def _search_spec(
    c: Ctx, namespace: NamespaceDoc, retriever: RetrieverDoc, where: str, search: dict[str, Any]
) -> SearchSpec:
    plugin, feature = await _resolve_feature(namespace, search["feature_uri"], f"{where}.feature_uri")
    query = search.get("query")
    if isinstance(query, dict):
        query = query.get("text") or query.get("value")
    if not isinstance(query, str) or not query:
        raise ApiError(422, f"{where}.query: each search needs a text query", '"query": "{{INPUT.query}}"')
    if len(query.encode()) > c.settings.max_inline_text_bytes:
        raise ApiError(
            422,
            f"{where}.query is {len(query.encode())} bytes; a query is limited to {c.settings.max_inline_text_bytes}",
            "send a shorter query",
        )
    if retriever.collection_ids is not None:
        collection_ids = retriever.collection_ids
    else:
        docs = await CollectionDoc.find(CollectionDoc.namespace_id == namespace.id).to_list()
        collection_ids = [
            d.id for d in docs if any(v.name == feature and v.plugin_id == plugin.plugin_id for v in d.vector_indexes)
        ]
    if not collection_ids:
        raise ApiError(
            422,
            f"{where}.feature_uri: no collection of this namespace has the feature {feature!r}",
            "create a collection with the plugin first",
        )
    extractor = {"plugin_id": plugin.plugin_id, "parameters": {}}
    for cid in collection_ids:
        col = await CollectionDoc.get(cid)
        match = next(
            (fe for fe in (col.feature_extractors if col else []) if fe.get("plugin_id") == plugin.plugin_id), None
        )
        if match:
            extractor = match
            break
    return SearchSpec(
        feature_name=feature,
        query_text=query,
        plugin=await plugin_ref(namespace.id, extractor),
        collection_ids=collection_ids,
    )
