"""``/v1/tasks``: every key sees the tasks of its own namespaces only, filtered and paged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.registry.records import Batch
from featurebus.registry.usecases import tasks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def batch(t: Twins, n: int, namespace_id: str, status: str = "PENDING", org: str = "org_1") -> Batch:
    made = Batch(
        id=f"btch_{n}",
        org_id=org,
        namespace_id=namespace_id,
        bucket_id="bkt",
        collection_ids=["col"],
        task_id=f"task_{n}",
        status=status,
        created_at=T0 + timedelta(seconds=n),
    )
    await t.tables.batches.insert(made)
    return made


async def test_tasks_are_listed_oldest_first_with_the_total_and_filtered_by_status() -> None:
    t = twins()
    docs = await t.namespace("docs")
    for n, status in enumerate(["COMPLETED", "PENDING", "COMPLETED", "FAILED"]):
        await batch(t, n, docs.id, status)
    found, total = await tasks.list_tasks(t.c, ADMIN, 1, 2)
    assert ([b.task_id for b in found], total) == (["task_1", "task_2"], 4)
    done, total = await tasks.list_tasks(t.c, ADMIN, 0, 10, status="COMPLETED")
    assert ([b.task_id for b in done], total) == (["task_0", "task_2"], 2)
    assert await tasks.list_tasks(t.c, ADMIN, 0, 10, task_type=tasks.BATCH_TASK) == (
        await tasks.list_tasks(t.c, ADMIN, 0, 10)
    )
    assert await tasks.list_tasks(t.c, ADMIN, 0, 10, task_type="engine_cluster_build") == ([], 0)


async def test_a_key_lists_only_the_tasks_of_namespaces_it_may_use() -> None:
    t = twins()
    docs, other = await t.namespace("docs"), await t.namespace("other")
    await batch(t, 1, docs.id)
    await batch(t, 2, other.id)
    await batch(t, 3, "ns_theirs", org="org_2")
    mine, total = await tasks.list_tasks(t.c, limited_to(docs.id), 0, 10)
    assert ([b.task_id for b in mine], total) == (["task_1"], 1)
    every, total = await tasks.list_tasks(t.c, ADMIN, 0, 10)
    assert ([b.task_id for b in every], total) == (["task_1", "task_2"], 2)  # never another organization's
