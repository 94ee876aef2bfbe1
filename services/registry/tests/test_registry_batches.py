"""Batch bookkeeping against a real MongoDB: replays and any arrival order give the same counts."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from beanie import init_beanie
from pymongo import AsyncMongoClient

from featurebus.common.events import BatchIndexed, BatchPlanned, ReasonCode, RowFailure
from featurebus.registry.batch_progress import record_indexed, record_planned
from featurebus.registry.documents import ALL_DOCUMENTS, BatchDoc

pytestmark = pytest.mark.integration


@pytest.fixture
async def mongo(local_stack) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    client: AsyncMongoClient = AsyncMongoClient(local_stack.env()["FEATUREBUS_MONGO_URI"])
    await init_beanie(database=client[f"registry_test_{uuid.uuid4().hex[:8]}"], document_models=ALL_DOCUMENTS)
    yield
    await client.close()


def indexed(frame: str, rows: int, written: int) -> BatchIndexed:
    failures = [
        RowFailure(document_id=f"{frame}-{i}", object_id="o", reason=ReasonCode.UNKNOWN_VECTOR_NAME, message="m")
        for i in range(rows - written)
    ]
    return BatchIndexed(
        org_id="o",
        namespace_id="n",
        batch_id="b1",
        frame_id=frame,
        collection_id="c",
        plugin_id="p",
        rows_in=rows,
        rows_embedded=rows,
        rows_written=written,
        failures=failures,
    )


async def test_frames_before_the_plan_and_replayed_frames_count_once(mongo: None) -> None:
    await BatchDoc(id="b1", org_id="o", namespace_id="n", bucket_id="bkt", collection_ids=["c"], task_id="t1").insert()
    await record_indexed(indexed("f1", 4, 4))
    assert (await BatchDoc.get("b1")).status == "IN_PROGRESS"  # type: ignore[union-attr]
    await record_planned(BatchPlanned(batch_id="b1", namespace_id="n", frames_total=2, rows_in=7))
    await record_indexed(indexed("f1", 4, 4))  # replayed
    batch = await BatchDoc.get("b1")
    assert batch is not None and (batch.status, batch.frames_done, batch.rows_written) == ("IN_PROGRESS", 1, 4)
    await record_indexed(indexed("f2", 3, 1))
    await record_indexed(indexed("f2", 3, 1))  # replayed
    batch = await BatchDoc.get("b1")
    assert batch is not None
    assert (batch.status, batch.rows_in, batch.rows_written, batch.rows_failed) == ("COMPLETED_WITH_ERRORS", 7, 5, 2)
    assert batch.failure_summary == {"unknown_vector_name": 2} and batch.completed_at is not None
