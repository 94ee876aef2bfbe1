"""``/v1/namespaces/{ns}/buckets/{bucket_id}/batches``: trigger, status, failed documents, retry."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from featurebus.common.events import ReasonCode
from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import MAX_LIMIT, Listing, Page
from featurebus.registry.records import Batch
from featurebus.registry.usecases import batches
from featurebus.registry.usecases.batches import FailedDocument

router = APIRouter(prefix="/v1/namespaces/{ns}/buckets/{bucket_id}/batches")


class TriggerBody(BaseModel):
    collection_ids: list[str] = Field(min_length=1, max_length=100)


class CollectionCountsView(BaseModel):
    """One collection's counts in a batch, from the same frames as the batch's: over the collections,
    rows_embedded, rows_written and rows_failed add up to the batch's, and rows_in does too once
    every frame is reported (frames_done == frames_total); until then it counts the rows of the
    frames reported so far. Rows never run in a cancelled batch are not split per collection."""

    collection_id: str
    rows_in: int
    rows_embedded: int
    rows_written: int
    rows_failed: int


class BatchView(BaseModel):
    batch_id: str
    task_id: str
    status: str
    bucket_id: str
    collection_ids: list[str]
    rows_in: int
    rows_embedded: int
    rows_written: int
    rows_failed: int
    # Rows never run because the batch was cancelled: rows_in == written + failed + cancelled.
    rows_cancelled: int
    frames_total: int
    frames_done: int
    failure_summary: dict[str, int]
    error: str | None
    object_ids: list[str] | None
    created_at: datetime
    completed_at: datetime | None
    cancelled_at: datetime | None
    # One entry per collection of the batch; None for a batch stored before the registry kept them.
    collections: list[CollectionCountsView] | None = None

    @classmethod
    def of(cls, b: Batch) -> BatchView:
        return cls(batch_id=b.id, **b.model_dump(exclude={"id", "org_id", "namespace_id", "planned"}))


class FailedDocumentView(BaseModel):
    collection_id: str
    document_id: str
    object_id: str
    reason: ReasonCode
    message: str
    hint: str | None

    @classmethod
    def of(cls, row: FailedDocument) -> FailedDocumentView:
        return cls(collection_id=row.collection_id, **row.failure.model_dump())


@router.post("/trigger", status_code=201)
async def trigger(
    ns: str, bucket_id: str, body: TriggerBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BatchView:
    return BatchView.of(await batches.trigger_batch(c, who, ns, bucket_id, body.collection_ids))


@router.get("/{batch_id}")
async def batch_status(
    ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BatchView:
    return BatchView.of(await batches.get_batch(c, who, ns, bucket_id, batch_id))


@router.get("/{batch_id}/failed-documents")
async def failed_documents(
    ns: str,
    bucket_id: str,
    batch_id: str,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, description=f"at most {MAX_LIMIT} are returned"),
    who: Principal = Depends(principal),
    c: Ctx = Depends(ctx),
) -> Listing[FailedDocumentView]:
    p = Page(offset, min(limit, MAX_LIMIT))  # a larger limit is cut, not refused (as the guide's API does)
    rows, total = await batches.failed_documents(c, who, ns, bucket_id, batch_id, p.offset, p.limit)
    return Listing.of([FailedDocumentView.of(r) for r in rows], total, p)


@router.post("/{batch_id}/retry", status_code=201)
async def retry(
    ns: str, bucket_id: str, batch_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> BatchView:
    return BatchView.of(await batches.retry_batch(c, who, ns, bucket_id, batch_id))
