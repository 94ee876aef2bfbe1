from __future__ import annotations

import random

import pytest

from featurebus.common import ids
from featurebus.common.events import (
    Blob,
    CollectionTarget,
    ComputeProfile,
    IngestedObject,
    PluginRef,
)
from featurebus.common.frames import FRAME_COLUMNS, from_parquet, to_parquet
from featurebus.dispatcher.frame_planner import PlanError, plan_frames


def plugin(plugin_id: str = "text_embed_1_0_0", batch_size: int = 64) -> PluginRef:
    return PluginRef(
        plugin_id=plugin_id,
        name=plugin_id,
        version="1.0.0",
        archive_uri="s3://fb/p.zip",
        archive_sha256="0" * 64,
        compute_profile=ComputeProfile(batch_size=batch_size),
    )


def text_obj(object_id: str, text: str = "hello") -> IngestedObject:
    return IngestedObject(object_id=object_id, blobs=[Blob(blob_id="b_text", property="text", data=text)])


def test_rows_have_exactly_the_guide_columns_and_values() -> None:
    image = IngestedObject(
        object_id="obj_2",
        blobs=[
            Blob(
                blob_id="b_img",
                property="photo",
                type="image",
                uri="s3://fb/blobs/x.jpg",
                mime_type="image/jpeg",
                size_bytes=1234,
            ),
            Blob(blob_id="b_cap", property="caption", data="a cat"),
        ],
    )
    frames = plan_frames(
        "bat_1", [image, text_obj("obj_1")], [CollectionTarget(collection_id="col_1", feature_extractors=[plugin()])]
    )
    assert len(frames) == 1
    df = frames[0].to_dataframe()
    assert list(df.columns) == list(FRAME_COLUMNS)
    rows = df.to_dict("records")
    assert [(r["object_id"], r["blob_id"]) for r in rows] == [
        ("obj_1", "b_text"),
        ("obj_2", "b_cap"),
        ("obj_2", "b_img"),
    ]
    text_row, caption_row, image_row = rows
    assert caption_row["data"] == "a cat"
    assert text_row["data"] == "hello" and text_row["size_bytes"] == 0 and text_row["mime_type"] == "text/plain"
    assert image_row["data"] == "s3://fb/blobs/x.jpg" and image_row["size_bytes"] == 1234
    assert image_row["blob_type"] == "image" and image_row["blob_property"] == "photo"
    assert text_row["document_id"] == ids.document_id("col_1", "obj_1", "b_text")
    assert {r["feature_extractor_id"] for r in rows} == {"text_embed_1_0_0"}
    assert {r["collection_id"] for r in rows} == {"col_1"}
    # The frame survives the Parquet round trip with the same columns and types.
    back = from_parquet(to_parquet(df))
    assert list(back.columns) == list(FRAME_COLUMNS) and back["size_bytes"].dtype == "int64"


def test_chunks_by_batch_size_with_deterministic_ids_and_keys() -> None:
    objects = [text_obj(f"obj_{i}") for i in range(5)]
    target = CollectionTarget(collection_id="col_1", feature_extractors=[plugin(batch_size=2)])
    frames = plan_frames("bat_1", objects, [target])
    assert [len(f.rows) for f in frames] == [2, 2, 1]
    assert [f.frame_index for f in frames] == [0, 1, 2]
    assert frames[1].frame_id == ids.deterministic_id("frm", "bat_1", "col_1", "text_embed_1_0_0", "1")
    assert frames[2].key == "frames/bat_1/col_1/text_embed_1_0_0/00002.parquet"


def test_replanning_a_shuffled_snapshot_gives_identical_frames() -> None:
    objects = [text_obj(f"obj_{i:02d}", f"t{i}") for i in range(7)]
    targets = [CollectionTarget(collection_id="col_1", feature_extractors=[plugin(batch_size=3)])]
    first = plan_frames("bat_1", objects, targets)
    shuffled = objects[:]
    random.Random(4).shuffle(shuffled)
    second = plan_frames("bat_1", shuffled, targets)
    assert first == second
    assert to_parquet(first[0].to_dataframe()) == to_parquet(second[0].to_dataframe())


def test_one_frame_set_per_collection_and_extractor() -> None:
    targets = [
        CollectionTarget(collection_id="col_a", feature_extractors=[plugin("p1_1_0_0"), plugin("p2_1_0_0")]),
        CollectionTarget(collection_id="col_b", feature_extractors=[plugin("p1_1_0_0")]),
    ]
    frames = plan_frames("bat_1", [text_obj("obj_1")], targets)
    assert [(f.collection_id, f.plugin.plugin_id) for f in frames] == [
        ("col_a", "p1_1_0_0"),
        ("col_a", "p2_1_0_0"),
        ("col_b", "p1_1_0_0"),
    ]
    assert len({f.frame_id for f in frames}) == 3
    # Documents are per collection: the same blob is a different document in another collection.
    assert frames[0].rows[0]["document_id"] == frames[1].rows[0]["document_id"] != frames[2].rows[0]["document_id"]


def test_empty_snapshot_gives_no_frames() -> None:
    assert plan_frames("bat_1", [], [CollectionTarget(collection_id="c", feature_extractors=[plugin()])]) == []


@pytest.mark.parametrize(
    ("targets", "needle"),
    [
        ([], "no collections"),
        ([CollectionTarget(collection_id="col_1", feature_extractors=[])], "has no feature extractors"),
        ([CollectionTarget(collection_id="col_1", feature_extractors=[plugin(), plugin()])], "twice"),
    ],
)
def test_unusable_targets_raise_a_plan_error(targets: list[CollectionTarget], needle: str) -> None:
    with pytest.raises(PlanError, match=needle):
        plan_frames("bat_1", [text_obj("obj_1")], targets)
