"""``/v1/tasks/{task_id}``: a batch's status by its task id (the guide's tasks)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.records import Batch
from featurebus.registry.usecases import tasks

router = APIRouter()


class TaskView(BaseModel):
    task_id: str
    task_type: Literal["batch"] = "batch"
    status: str
    batch_id: str
    bucket_id: str
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, b: Batch) -> TaskView:
        return cls(
            task_id=b.task_id,
            status=b.status,
            batch_id=b.id,
            bucket_id=b.bucket_id,
            created_at=b.created_at,
            completed_at=b.completed_at,
        )


@router.get("/v1/tasks/{task_id}")
async def task(task_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)) -> TaskView:
    return TaskView.of(await tasks.get_task(c, who, task_id))
