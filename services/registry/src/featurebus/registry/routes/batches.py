"""Batches of a bucket: trigger, status, failed documents, retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from featurebus.registry.auth import Principal, principal
from featurebus.registry.batch_start import start_batch
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.documents import BatchDoc, BucketDoc, FrameResult, NamespaceDoc
from featurebus.registry.errors import ApiError
from featurebus.registry.routes.buckets import get_bucket

router = APIRouter()


def batch_view(b: BatchDoc) -> dict[str, Any]:
    return {
        "batch_id": b.id,
        "task_id": b.task_id,
        "status": b.status,
        "bucket_id": b.bucket_id,
        "collection_ids": b.collection_ids,
        "rows_in": b.rows_in,
        "rows_embedded": b.rows_embedded,
        "rows_written": b.rows_written,
        "rows_failed": b.rows_failed,
        "frames_total": b.frames_total,
        "frames_done": b.frames_done,
        "failure_summary": b.failure_summary,
        "error": b.error,
        "object_ids": b.object_ids,
        "created_at": b.created_at,
        "completed_at": b.completed_at,
    }


class TriggerBody(BaseModel):
    collection_ids: list[str] = Field(min_length=1, max_length=100)


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/trigger", status_code=201)
async def trigger(
    ns: str, bucket_id: str, body: TriggerBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    return batch_view(await start_batch(c.bus, namespace, bucket, body.collection_ids))


async def get_batch(who: Principal, ns: str, bucket_id: str, batch_id: str) -> tuple[NamespaceDoc, BucketDoc, BatchDoc]:
    namespace, bucket = await get_bucket(who, ns, bucket_id)
    batch = await BatchDoc.get(batch_id)
    if batch is None or batch.bucket_id != bucket.id:
        raise ApiError(404, f"batch {batch_id!r} not found in bucket {bucket_id!r}")
    return namespace, bucket, batch


@router.get("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}")
async def batch_status(ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    return batch_view((await get_batch(who, ns, bucket_id, batch_id))[2])


@router.get("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/failed-documents")
async def failed_documents(
    ns: str,
    bucket_id: str,
    batch_id: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, description="at most 1000 are returned"),
    who: Principal = Depends(principal),
) -> dict[str, Any]:
    await get_batch(who, ns, bucket_id, batch_id)
    frames = await FrameResult.find(FrameResult.batch_id == batch_id).sort("+frame_id").to_list()
    rows = [
        {"collection_id": f.collection_id, **failure.model_dump(mode="json")} for f in frames for failure in f.failures
    ]
    limit = min(limit, 1000)
    return {"results": rows[offset : offset + limit], "total": len(rows), "offset": offset, "limit": limit}


@router.post("/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/retry", status_code=201)
async def retry(
    ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> dict[str, Any]:
    namespace, bucket, batch = await get_batch(who, ns, bucket_id, batch_id)
    frames = await FrameResult.find(FrameResult.batch_id == batch_id).to_list()
    failed = sorted({failure.object_id for f in frames for failure in f.failures})
    if not failed:
        raise ApiError(409, f"batch {batch_id} has no failed documents to retry")
    return batch_view(await start_batch(c.bus, namespace, bucket, batch.collection_ids, failed))
