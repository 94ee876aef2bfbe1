"""Tasks: a batch's status by its task id (the guide's /v1/tasks)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from featurebus.registry.auth import Principal, may_see_namespace, principal
from featurebus.registry.documents import BatchDoc
from featurebus.registry.errors import ApiError

router = APIRouter()


@router.get("/v1/tasks/{task_id}")
async def task(task_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
    batch = await BatchDoc.find_one(BatchDoc.task_id == task_id, BatchDoc.org_id == who.org_id)
    if batch is None or not await may_see_namespace(who, batch.namespace_id):
        raise ApiError(404, f"task {task_id!r} not found")
    return {
        "task_id": task_id,
        "task_type": "batch",
        "status": batch.status,
        "batch_id": batch.id,
        "bucket_id": batch.bucket_id,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
    }
