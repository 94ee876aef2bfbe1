"""Tasks: the batches of the caller's namespaces seen as the guide's ``/v1/tasks``."""

from __future__ import annotations

from typing import Any

from featurebus.registry.auth import Principal, may_see_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import NotFound
from featurebus.registry.records import Batch
from featurebus.registry.tables import AnyOf
from featurebus.registry.usecases.batches import cancel_batch

__all__ = ["BATCH_TASK", "cancel_task", "get_task", "list_tasks"]

# Mixpeek's TaskType of a batch run; the only kind of task featurebus has today.
BATCH_TASK = "api_buckets_batches_process"


async def get_task(c: Ctx, who: Principal, task_id: str) -> Batch:
    """The batch of ``task_id``, if it is in a namespace the caller may use; NotFound otherwise."""
    batch = await c.tables.batches.find_one(task_id=task_id, org_id=who.org_id)
    if batch is None or not await may_see_namespace(c.tables, who, batch.namespace_id):
        raise NotFound(f"task {task_id!r} not found")
    return batch


async def cancel_task(c: Ctx, who: Principal, task_id: str) -> Batch:
    """Cancel the batch of ``task_id`` (see :func:`~featurebus.registry.usecases.batches.cancel_batch`)."""
    return await cancel_batch(c, await get_task(c, who, task_id))


async def list_tasks(
    c: Ctx, who: Principal, offset: int, limit: int, *, status: str | None = None, task_type: str | None = None
) -> tuple[list[Batch], int]:
    """The caller's tasks, oldest first; a ``task_type`` other than a batch run matches none."""
    if task_type is not None and task_type != BATCH_TASK:
        return [], 0
    where: dict[str, Any] = {"org_id": who.org_id}
    if who.namespaces is not None:
        where["namespace_id"] = AnyOf(who.namespaces)
    if status is not None:
        where["status"] = status
    return await c.tables.batches.page(offset, limit, **where)
