"""Objects on the twins: checked against the bucket's schema, published on objects.ingested and
counted; a refused object (or one bad object of many) publishes and counts nothing, and names the
field with its fix."""

from __future__ import annotations

from typing import Any

import pytest
from registry_blob_samples import PDF, png
from registry_twins import ADMIN, Twins, limited_to, twins

from featurebus.common.events import IngestedObject, ObjectsIngested
from featurebus.registry.errors import Invalid, NotFound
from featurebus.registry.routes.objects import ObjectView
from featurebus.registry.usecases import blob_uploads, buckets, objects
from featurebus.registry.usecases.objects import MAX_EVENT_BYTES, MAX_OBJECT_ID, MAX_OBJECTS_PER_REQUEST

SCHEMA: dict[str, Any] = {
    "properties": {"text": {"type": "text", "required": True}, "photo": {"type": "image"}, "voice": {"type": "audio"}}
}


def text(data: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"blobs": [{"property": "text", "type": "text", "data": data}], **extra}


async def bucket(**settings: Any) -> tuple[Twins, str]:
    t = twins(**settings)
    await t.namespace("docs")
    return t, (await buckets.create_bucket(t.c, ADMIN, "docs", "articles", SCHEMA)).id


async def object_count(t: Twins, bucket_id: str) -> int:
    found = await t.tables.buckets.get(bucket_id)
    assert found is not None
    return found.object_count


async def uploaded(t: Twins, bucket_id: str, data: bytes, content_type: str = "image/png") -> str:
    made, url = await blob_uploads.create_blob_upload(t.c, ADMIN, "docs", bucket_id, "f", content_type, len(data))
    t.store.put_presigned(url, data)
    return made.id


async def refused(t: Twins, bucket_id: str, body: Any) -> Invalid:
    with pytest.raises(Invalid) as caught:
        await objects.add_object(t.c, ADMIN, "docs", bucket_id, body)
    return caught.value


async def test_an_object_is_published_for_the_dispatcher_and_counted() -> None:
    t, bkt = await bucket()
    obj = await objects.add_object(t.c, ADMIN, "docs", bkt, text(object_id="o1", metadata={"lang": "en"}))
    assert (obj.object_id, obj.metadata, [(b.property, b.data) for b in obj.blobs]) == (
        "o1",
        {"lang": "en"},
        [("text", "hello")],
    )
    [(event, key)] = t.bus.published
    assert isinstance(event, ObjectsIngested) and key == bkt
    assert (event.org_id, event.namespace_id, event.bucket_id, event.objects) == ("org_1", "ns_docs", bkt, [obj])
    assert await object_count(t, bkt) == 1
    again = await objects.add_object(t.c, ADMIN, "docs", bkt, text(object_id="o1"))
    assert again.blobs[0].blob_id == obj.blobs[0].blob_id  # blob ids follow from object, property and place
    generated = await objects.add_object(t.c, ADMIN, "docs", bkt, text())
    assert generated.object_id.startswith("obj_") and await object_count(t, bkt) == 3
    view = ObjectView.of(bkt, obj).model_dump()
    assert view["bucket_id"] == bkt and "data" not in view["blobs"][0]


async def test_a_referenced_upload_is_verified_and_its_bytes_described_in_the_blob() -> None:
    t, bkt = await bucket()
    image = png()
    upload_id = await uploaded(t, bkt, image)
    obj = await objects.add_object(
        t.c, ADMIN, "docs", bkt, {"blobs": [{"property": "photo", "upload_id": upload_id}, *text()["blobs"]]}
    )
    photo = obj.blobs[0]
    stored = await t.tables.blob_uploads.get(upload_id)
    assert stored is not None and stored.status == "verified"
    assert (photo.type, photo.uri, photo.mime_type, photo.size_bytes, photo.sha256, photo.data) == (
        "image",
        stored.uri,
        "image/png",
        len(image),
        stored.verified_sha256,
        None,
    )
    # an upload may be referenced by any number of objects
    second = await objects.add_object(
        t.c, ADMIN, "docs", bkt, {"blobs": [{"property": "photo", "upload_id": upload_id}, *text()["blobs"]]}
    )
    assert second.blobs[0].uri == photo.uri


async def test_inline_text_over_the_limit_is_refused_naming_the_blob() -> None:
    t, bkt = await bucket(max_inline_text_bytes=10)
    assert (await objects.add_object(t.c, ADMIN, "docs", bkt, text("x" * 10))).blobs[0].data == "x" * 10
    problem = await refused(t, bkt, text("é" * 6))
    assert problem.detail == "blobs[0].data is 12 bytes; inline text is limited to 10"
    assert len(t.bus.published) == 1 and await object_count(t, bkt) == 1


@pytest.mark.parametrize(
    ("body", "detail", "hint"),
    [
        (None, "the body must be an object with blobs", '"blobs": ['),
        ([1], "the body must be an object with blobs", None),
        (text(object_id="o" * (MAX_OBJECT_ID + 1)), f"object_id must be a string of at most {MAX_OBJECT_ID}", "leave"),
        (text(object_id=7), "object_id must be a string", None),
        (text(metadata=[1]), "metadata must be an object", None),
        ({"blobs": {"property": "text", "data": "x"}}, "blobs must be a list, not an object", '"blobs": [{'),
        ({"blobs": []}, "blobs must be a non-empty list", None),
        ({"blobs": [{"property": "txt", "data": "x"}]}, "blobs[0].property 'txt' is not in the bucket's schema", None),
        ({"blobs": [{"property": "text", "type": "image", "data": "x"}]}, "blobs[0].type 'image' does not match", None),
        (
            {"blobs": [{"property": "photo", "upload_id": "upl_x"}]},
            "required properties missing from blobs: ['text']",
            None,
        ),
        (
            {"blobs": [{"property": "photo", "data": "iVBORw0KGgo="}]},
            "image blobs reference their uploaded bytes by upload_id (got inline data)",
            "/uploads",
        ),
        ({"blobs": [{"property": "photo", "uri": "s3://featurebus/x"}, *text()["blobs"]]}, "(got a uri)", None),
        (text(metadata={"pad": "x" * MAX_EVENT_BYTES}), "body: the object is", "keep metadata small"),
    ],
)
async def test_a_bad_object_is_refused_naming_the_field_and_nothing_is_published(
    body: Any, detail: str, hint: str | None
) -> None:
    t, bkt = await bucket()
    problem = await refused(t, bkt, body)
    assert detail in problem.detail, problem.detail
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint
    assert t.bus.published == [] and await object_count(t, bkt) == 0


async def test_blobs_referencing_an_unverifiable_or_foreign_upload_are_refused_and_lose_nothing() -> None:
    t, bkt = await bucket()
    elsewhere = (await buckets.create_bucket(t.c, ADMIN, "docs", "elsewhere", SCHEMA)).id
    good = await uploaded(t, bkt, png())
    never_put, _ = await blob_uploads.create_blob_upload(t.c, ADMIN, "docs", bkt, "x.png", "image/png", 10)
    foreign = await uploaded(t, elsewhere, png())
    fake = await uploaded(t, bkt, PDF)

    def photo(upload_id: str, prop: str = "photo") -> dict[str, Any]:
        return {"blobs": [{"property": prop, "upload_id": upload_id}, *text()["blobs"]]}

    unput = await refused(t, bkt, photo(never_put.id))
    assert (
        unput.detail == f"blobs[0].upload_id {never_put.id}: no file was uploaded yet: nothing was PUT to presigned_url"
    )
    assert unput.hint is not None and "PUT" in unput.hint
    other = await refused(t, bkt, photo(foreign))
    assert other.detail == f"blobs[0].upload_id {foreign!r} is not an upload of bucket {bkt}"
    assert other.hint == f"create the upload in this bucket: POST .../buckets/{bkt}/uploads"
    assert "'upl_unknown' is not an upload of bucket" in (await refused(t, bkt, photo("upl_unknown"))).detail
    assert "are application/pdf (by their first bytes)" in (await refused(t, bkt, photo(fake))).detail
    assert "which property 'voice' cannot hold" in (await refused(t, bkt, photo(good, "voice"))).detail
    # One bad blob refuses the whole object; the good upload in it stays usable.
    both = {"blobs": [*photo(good)["blobs"], {"property": "voice", "upload_id": fake}]}
    assert (await refused(t, bkt, both)).detail.startswith("blobs[2].upload_id")
    assert t.bus.published == [] and await object_count(t, bkt) == 0
    assert (await objects.add_object(t.c, ADMIN, "docs", bkt, photo(good))).blobs[0].mime_type == "image/png"


async def test_many_objects_are_added_at_once_in_events_of_bounded_size() -> None:
    t, bkt = await bucket()
    items = [text("x" * 1000, object_id=f"o{i}") for i in range(MAX_OBJECTS_PER_REQUEST)]
    added = await objects.add_objects(t.c, ADMIN, "docs", bkt, {"objects": items})
    assert [o.object_id for o in added] == [f"o{i}" for i in range(MAX_OBJECTS_PER_REQUEST)]
    events: list[ObjectsIngested] = t.bus.events(ObjectsIngested)
    assert len(events) > 1 and all(len(e.model_dump_json()) < MAX_EVENT_BYTES + 1024 for e in events)
    published: list[IngestedObject] = [o for e in events for o in e.objects]
    assert published == added and {k for _, k in t.bus.published} == {bkt}
    assert await object_count(t, bkt) == MAX_OBJECTS_PER_REQUEST


@pytest.mark.parametrize(
    ("body", "detail", "hint"),
    [
        (
            {"objects": [text(), {"blobs": [{"property": "text", "data": 7}]}, text()]},
            "objects[1].blobs[0].data must be a string",
            None,
        ),
        (
            {"objects": [text(), {"blobs": [{"property": "txt", "data": "x"}]}]},
            "objects[1].blobs[0].property 'txt'",
            None,
        ),
        (
            {"objects": [text(), {"blobs": [{"property": "photo", "upload_id": "u"}]}]},
            "objects[1]: required properties",
            None,
        ),
        ({"objects": [text(), "x"]}, "objects[1] must be an object with blobs", None),
        ({"objects": [text(), text(metadata=3)]}, "objects[1].metadata must be an object", None),
        ({"objects": [text(object_id="o1")] * 2}, "objects repeat object_id ['o1']", "own object_id"),
        (
            {"objects": [text()] * (MAX_OBJECTS_PER_REQUEST + 1)},
            f"objects holds {MAX_OBJECTS_PER_REQUEST + 1} objects",
            "1000 objects or fewer",
        ),
        ({"objects": []}, "objects must be a non-empty list of objects", '{"objects": ['),
        ([text()], "objects must be a non-empty list of objects", None),
        (None, "objects must be a non-empty list of objects", None),
    ],
)
async def test_one_bad_object_of_many_adds_none_and_is_named(body: Any, detail: str, hint: str | None) -> None:
    t, bkt = await bucket()
    with pytest.raises(Invalid) as caught:
        await objects.add_objects(t.c, ADMIN, "docs", bkt, body)
    assert caught.value.detail.startswith(detail), caught.value.detail
    if hint is not None:
        assert caught.value.hint is not None and hint in caught.value.hint
    assert t.bus.published == [] and await object_count(t, bkt) == 0


async def test_a_key_limited_to_another_namespace_gets_not_found_adding_objects() -> None:
    t, bkt = await bucket()
    other = await t.namespace("other")
    stranger = limited_to(other.id)
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await objects.add_object(t.c, stranger, "docs", bkt, text())
    with pytest.raises(NotFound, match="namespace 'docs' not found"):
        await objects.add_objects(t.c, stranger, "docs", bkt, {"objects": [text()]})
    with pytest.raises(NotFound, match=f"bucket {bkt!r} not found in namespace 'other'"):
        await objects.add_objects(t.c, stranger, "other", bkt, {"objects": [text()]})
    assert t.bus.published == [] and await object_count(t, bkt) == 0
