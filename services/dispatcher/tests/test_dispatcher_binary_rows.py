"""Binary blobs become frame rows with every column of the guide's DataFrame Schema Reference right."""

from __future__ import annotations

import pytest

from featurebus.common import ids
from featurebus.common.events import Blob, CollectionTarget, ComputeProfile, IngestedObject, PluginRef
from featurebus.common.frames import FRAME_COLUMNS, from_parquet, to_parquet
from featurebus.dispatcher.frame_planner import frame_row, plan_frames
from featurebus.dispatcher.object_rules import frame_mime_type, split_valid

PLUGIN = PluginRef(
    plugin_id="mean_rgb_1_0_0",
    name="mean_rgb",
    version="1.0.0",
    archive_uri="s3://fb/p.zip",
    archive_sha256="0" * 64,
    compute_profile=ComputeProfile(batch_size=64),
)

BINARY = [
    ("photo", "image", "s3://featurebus/blobs/org/ns/bkt/upl_1/cat.png", "image/png", 2048),
    ("voice", "audio", "s3://featurebus/blobs/org/ns/bkt/upl_2/hello.mp3", "audio/mpeg", 4096),
    ("clip", "video", "s3://featurebus/blobs/org/ns/bkt/upl_3/run.mp4", "video/mp4", 1 << 20),
    ("paper", "pdf", "s3://featurebus/blobs/org/ns/bkt/upl_4/paper.pdf", "application/pdf", 777),
]


def binary_blob(prop: str, kind: str, uri: str, mime: str, size: int) -> Blob:
    return Blob(blob_id=f"b_{prop}", property=prop, type=kind, uri=uri, mime_type=mime, size_bytes=size)  # type: ignore[arg-type]


@pytest.mark.parametrize(("prop", "kind", "uri", "mime", "size"), BINARY)
def test_a_binary_row_has_every_column_of_the_guide(prop: str, kind: str, uri: str, mime: str, size: int) -> None:
    obj = IngestedObject(object_id="obj_1", blobs=[binary_blob(prop, kind, uri, mime, size)])
    row = frame_row("col_1", PLUGIN.plugin_id, obj, obj.blobs[0])
    assert set(row) == set(FRAME_COLUMNS)
    assert row == {
        "data": uri,  # an s3:// URL, never raw bytes
        "document_id": ids.document_id("col_1", "obj_1", f"b_{prop}"),
        "object_id": "obj_1",
        "blob_id": f"b_{prop}",
        "blob_property": prop,
        "blob_type": kind,
        "collection_id": "col_1",
        "feature_extractor_id": "mean_rgb_1_0_0",
        "mime_type": mime,
        "size_bytes": size,
    }


def test_a_mixed_frame_keeps_types_and_values_through_parquet() -> None:
    blobs = [binary_blob(*spec) for spec in BINARY]
    blobs.append(Blob(blob_id="b_caption", property="caption", data="a cat", size_bytes=99))
    obj = IngestedObject(object_id="obj_1", blobs=blobs)
    [frame] = plan_frames("bat_1", [obj], [CollectionTarget(collection_id="col_1", feature_extractors=[PLUGIN])])
    df = from_parquet(to_parquet(frame.to_dataframe()))
    assert list(df.columns) == list(FRAME_COLUMNS)
    assert df["size_bytes"].dtype == "int64"
    assert all(isinstance(v, str) for column in FRAME_COLUMNS if column != "size_bytes" for v in df[column])
    rows = {r["blob_property"]: r for r in df.to_dict("records")}
    assert rows["caption"]["data"] == "a cat" and rows["caption"]["size_bytes"] == 0  # 0 for inline text
    assert rows["caption"]["mime_type"] == "text/plain" and rows["caption"]["blob_type"] == "text"
    for prop, kind, uri, mime, size in BINARY:
        assert (rows[prop]["data"], rows[prop]["blob_type"], rows[prop]["mime_type"], rows[prop]["size_bytes"]) == (
            uri,
            kind,
            mime,
            size,
        )


def test_a_binary_blob_without_its_mime_type_gets_one_from_the_uri() -> None:
    # A producer publishing to Kafka directly may leave mime_type at the event's default (text/plain);
    # the row must still say image/... so that the plugin's IS_IMAGE steps see it.
    blob = Blob(blob_id="b1", property="photo", type="image", uri="s3://fb/blobs/cat.JPG", size_bytes=10)
    assert blob.mime_type == "text/plain"
    assert frame_mime_type(blob) == "image/jpeg"
    row = frame_row("col_1", PLUGIN.plugin_id, IngestedObject(object_id="o", blobs=[blob]), blob)
    assert row["mime_type"] == "image/jpeg" and row["blob_type"] == "image"
    mislabelled = Blob(blob_id="b1", property="a", type="audio", uri="s3://fb/x.wav", mime_type="image/png")
    assert frame_mime_type(mislabelled) in ("audio/wav", "audio/x-wav")


def test_a_binary_blob_whose_mime_type_cannot_fit_is_rejected_naming_the_field() -> None:
    no_hint = IngestedObject(
        object_id="obj_1", blobs=[Blob(blob_id="b1", property="photo", type="image", uri="s3://fb/blobs/upl_1/blob")]
    )
    wrong = IngestedObject(
        object_id="obj_2",
        blobs=[Blob(blob_id="b1", property="doc", type="pdf", uri="s3://fb/blobs/x.bin", mime_type="image/png")],
    )
    negative = IngestedObject(
        object_id="obj_3",
        blobs=[Blob(blob_id="b1", property="photo", type="image", uri="s3://fb/a.png", size_bytes=-1)],
    )
    valid, rejected = split_valid([no_hint, wrong, negative])
    assert valid == []
    first = str(rejected[0])
    assert "`mime_type` 'text/plain' does not fit its type 'image'" in first and "image/*" in first
    assert "application/pdf" in str(rejected[1])
    assert "`size_bytes`" in str(rejected[2])


def test_generic_document_and_binary_blobs_take_any_mime_type() -> None:
    blobs = [
        Blob(blob_id="b1", property="d", type="document", uri="s3://fb/a.docx", mime_type="application/msword"),
        Blob(blob_id="b2", property="x", type="binary", uri="s3://fb/a.bin", mime_type="application/octet-stream"),
    ]
    valid, rejected = split_valid([IngestedObject(object_id="o", blobs=blobs)])
    assert rejected == [] and len(valid) == 1
