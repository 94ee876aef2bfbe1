from __future__ import annotations

from featurebus.common.events import Blob, IngestedObject
from featurebus.dispatcher.object_rules import InvalidObjectsError, split_valid


def _obj(object_id: str, *blobs: Blob) -> IngestedObject:
    return IngestedObject(object_id=object_id, blobs=list(blobs))


def test_valid_text_and_binary_objects_pass() -> None:
    text = _obj("obj_1", Blob(blob_id="b1", property="text", type="text", data="hello"))
    image = _obj(
        "obj_2",
        Blob(
            blob_id="b1", property="img", type="image", uri="s3://fb/blobs/a.jpg", mime_type="image/jpeg", size_bytes=10
        ),
    )
    valid, rejected = split_valid([text, image])
    assert [o.object_id for o in valid] == ["obj_1", "obj_2"]
    assert rejected == []


def test_text_blob_without_data_names_the_field() -> None:
    valid, rejected = split_valid([_obj("obj_1", Blob(blob_id="b1", property="text", type="text"))])
    assert valid == []
    assert "`data`" in str(rejected[0]) and "obj_1" in str(rejected[0])


def test_binary_blob_needs_an_s3_uri() -> None:
    no_uri = _obj("obj_1", Blob(blob_id="b1", property="img", type="image", data="raw bytes?"))
    http_uri = _obj("obj_2", Blob(blob_id="b1", property="img", type="image", uri="http://x/y.jpg"))
    valid, rejected = split_valid([no_uri, http_uri])
    assert valid == []
    assert "needs `uri`" in str(rejected[0]) and "inline `data` is only for text" in str(rejected[0])
    assert "s3://bucket/key" in str(rejected[1])


def test_object_without_blobs_and_duplicate_blob_ids_are_rejected() -> None:
    blob = Blob(blob_id="b1", property="text", data="x")
    valid, rejected = split_valid([_obj("obj_1"), _obj("obj_2", blob, blob)])
    assert valid == []
    assert "no blobs" in str(rejected[0])
    assert "appears twice" in str(rejected[1])


def test_error_lists_every_rejected_object() -> None:
    _, rejected = split_valid([_obj("obj_a"), _obj("obj_b")])
    message = str(InvalidObjectsError("bkt_1", rejected))
    assert "bkt_1" in message and "2 object(s) rejected" in message
    assert "obj_a" in message and "obj_b" in message
