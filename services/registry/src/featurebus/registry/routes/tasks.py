"""``/v1/tasks``: a batch's status by its task id, and the caller's tasks (Mixpeek's task API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.paging import Page, page
from featurebus.registry.records import Batch
from featurebus.registry.routes.batches import CollectionCountsView
from featurebus.registry.usecases import tasks

router = APIRouter(prefix="/v1/tasks")

TaskStatus = Literal["PENDING", "IN_PROGRESS", "COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"]


class TaskView(BaseModel):
    """Mixpeek's TaskResponse, plus the batch it is."""

    task_id: str
    task_type: str = tasks.BATCH_TASK
    status: str
    batch_id: str
    bucket_id: str
    namespace_id: str
    created_at: datetime
    completed_at: datetime | None
    error: str | None
    # The batch's counts: rows_in == rows_written + rows_failed + rows_cancelled once it has ended.
    rows_in: int = 0
    rows_written: int = 0
    rows_failed: int = 0
    rows_cancelled: int = 0
    # The same counts per collection (see GET .../batches/{batch_id}).
    collections: list[CollectionCountsView] | None = None

    @classmethod
    def of(cls, b: Batch) -> TaskView:
        return cls(
            task_id=b.task_id,
            status=b.status,
            batch_id=b.id,
            bucket_id=b.bucket_id,
            namespace_id=b.namespace_id,
            created_at=b.created_at,
            completed_at=b.completed_at,
            error=b.error,
            rows_in=b.rows_in,
            rows_written=b.rows_written,
            rows_failed=b.rows_failed,
            rows_cancelled=b.rows_cancelled,
            collections=None
            if b.collections is None
            else [CollectionCountsView(**n.model_dump()) for n in b.collections],
        )


class KilledTask(TaskView):
    """Mixpeek's GenericDeleteResponse (``success``, ``message``), plus the task as it is now."""

    success: bool = True
    message: str


class ListTasks(BaseModel):
    """Mixpeek's ListTasksRequest: ``status`` and ``task_type`` filter; the other filters are not supported."""

    model_config = ConfigDict(extra="forbid")
    status: TaskStatus | None = None
    task_type: str | None = Field(default=None, max_length=100)


class Pagination(BaseModel):
    total: int
    page: int
    page_size: int
    total_pages: int
    offset: int


class TaskListing(BaseModel):
    results: list[TaskView]
    pagination: Pagination


@router.get("/{task_id}")
async def task(task_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> TaskView:
    return TaskView.of(await tasks.get_task(c, who, task_id))


@router.delete("/{task_id}")
async def kill_task(task_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> KilledTask:
    """Cancel a running task (idempotent); a finished one is a 409, another tenant's a 404."""
    view = TaskView.of(await tasks.cancel_task(c, who, task_id))
    return KilledTask(**view.model_dump(), message=f"task {task_id} cancelled: no further rows will run")


@router.post("/list")
async def list_tasks(
    body: ListTasks | None = None,
    who: Principal = Depends(principal),
    p: Page = Depends(page),
    c: Ctx = Depends(ctx),
) -> TaskListing:
    """Oldest first, ``?offset=&limit=``; an empty body lists every task the key may see."""
    filters: dict[str, Any] = body.model_dump() if body else {}
    found, total = await tasks.list_tasks(c, who, p.offset, p.limit, **filters)
    pages = Pagination(
        total=total, page=p.offset // p.limit + 1, page_size=p.limit, total_pages=-(-total // p.limit), offset=p.offset
    )
    return TaskListing(results=[TaskView.of(b) for b in found], pagination=pages)
