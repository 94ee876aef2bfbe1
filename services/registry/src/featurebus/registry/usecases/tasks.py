"""Tasks: a batch seen by its task id (the guide's ``/v1/tasks``)."""

from __future__ import annotations

from featurebus.registry.auth import Principal, may_see_namespace
from featurebus.registry.context import Ctx
from featurebus.registry.errors import NotFound
from featurebus.registry.records import Batch

__all__ = ["get_task"]


async def get_task(c: Ctx, who: Principal, task_id: str) -> Batch:
    """The batch of ``task_id``, if it is in a namespace the caller may use; NotFound otherwise."""
    batch = await c.tables.batches.find_one(task_id=task_id, org_id=who.org_id)
    if batch is None or not await may_see_namespace(c.tables, who, batch.namespace_id):
        raise NotFound(f"task {task_id!r} not found")
    return batch
