"""The object repository's rules, asserted identically on the in-memory twin and on MongoDB.

The MongoDB run uses the real local stack's SecantusDB (a MongoDB-wire server), so it is marked
``integration``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from featurebus.common.events import Blob, IngestedObject
from featurebus.dispatcher.mongo_repository import MongoObjectRepository
from featurebus.dispatcher.repository import InMemoryObjectRepository, ObjectRepository

T0 = datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(params=["memory", pytest.param("mongo", marks=pytest.mark.integration)])
async def repository(request: pytest.FixtureRequest) -> AsyncIterator[ObjectRepository]:
    if request.param == "memory":
        yield InMemoryObjectRepository()
        return
    uri = request.getfixturevalue("local_stack").env()["FEATUREBUS_MONGO_URI"]
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri, tz_aware=True)
    repo = MongoObjectRepository(client[f"fbtest_{uuid.uuid4().hex[:8]}_dispatcher"])
    await repo.init()
    try:
        yield repo
    finally:
        await client.close()


def text(object_id: str, data: str) -> IngestedObject:
    return IngestedObject(object_id=object_id, blobs=[Blob(blob_id="b_text", property="text", data=data)])


async def put(repo: ObjectRepository, *objects: IngestedObject, at: datetime = T0, bucket: str = "bkt_1") -> int:
    return await repo.upsert(
        org_id="org_1", namespace_id="ns_1", bucket_id=bucket, objects=list(objects), ingested_at=at
    )


async def test_stores_objects_with_blobs_and_metadata_ordered_by_id(repository: ObjectRepository) -> None:
    image = IngestedObject(
        object_id="obj_a",
        blobs=[
            Blob(
                blob_id="b_img",
                property="photo",
                type="image",
                uri="s3://fb/x.jpg",
                mime_type="image/jpeg",
                size_bytes=99,
            )
        ],
        metadata={"source": "camera", "tags": ["a", "b"]},
    )
    assert await put(repository, text("obj_c", "three"), image, text("obj_b", "two")) == 3
    stored = await repository.list_objects("bkt_1")
    assert [o.object_id for o in stored] == ["obj_a", "obj_b", "obj_c"]
    assert stored[0] == image


async def test_replaying_an_ingest_changes_nothing(repository: ObjectRepository) -> None:
    await put(repository, text("obj_1", "one"))
    before = await repository.list_objects("bkt_1")
    await put(repository, text("obj_1", "one"))
    assert await repository.list_objects("bkt_1") == before


async def test_newer_version_wins_and_a_late_replay_does_not_roll_it_back(repository: ObjectRepository) -> None:
    await put(repository, text("obj_1", "old"), at=T0)
    await put(repository, text("obj_1", "new"), at=T0 + timedelta(seconds=1))
    await put(repository, text("obj_1", "old"), at=T0)  # the old message, delivered again
    (stored,) = await repository.list_objects("bkt_1")
    assert stored.blobs[0].data == "new"


async def test_lists_only_the_bucket_and_the_requested_ids(repository: ObjectRepository) -> None:
    await put(repository, text("obj_1", "a"), text("obj_2", "b"), text("obj_3", "c"))
    await put(repository, text("obj_9", "z"), bucket="bkt_2")
    assert [o.object_id for o in await repository.list_objects("bkt_1", ["obj_3", "obj_1", "obj_404"])] == [
        "obj_1",
        "obj_3",
    ]
    assert [o.object_id for o in await repository.list_objects("bkt_2")] == ["obj_9"]
    assert await repository.list_objects("bkt_empty") == []
    assert await put(repository) == 0
