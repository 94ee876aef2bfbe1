"""The registry's pure rules: batch status, templates, feature URIs, fusion, bucket schemas."""

from __future__ import annotations

import pytest

from featurebus.common.events import ReasonCode, RowFailure
from featurebus.common.queries import SearchHit
from featurebus.registry.batch_outcome import status_of, tally
from featurebus.registry.bucket_schema import SchemaError, check_schema, to_blobs
from featurebus.registry.feature_uri import parse_feature_uri
from featurebus.registry.fusion import fuse
from featurebus.registry.templates import MissingInput, fill


def failure(reason: ReasonCode = ReasonCode.DIMENSION_MISMATCH) -> RowFailure:
    return RowFailure(document_id="d", object_id="o", reason=reason, message="m")


def status(
    frames: list[tuple[int, int, int, list[RowFailure]]],
    total: int,
    rows_in: int,
    planned: bool = True,
    error: str | None = None,
) -> str:
    return status_of(planned=planned, frames_total=total, rows_in=rows_in, counts=tally(frames), error=error)


def test_completed_only_when_every_row_was_written() -> None:
    assert status([(2, 2, 2, []), (1, 1, 1, [])], total=2, rows_in=3) == "COMPLETED"
    assert status([(2, 2, 1, [failure()]), (1, 1, 1, [])], total=2, rows_in=3) == "COMPLETED_WITH_ERRORS"


def test_no_row_written_is_failed_never_completed_with_zero_documents() -> None:
    assert status([(3, 3, 0, [failure()] * 3)], total=1, rows_in=3) == "FAILED"
    assert status([], total=0, rows_in=0, error="bucket has no objects") == "FAILED"


def test_in_progress_until_every_frame_reported_in_any_order() -> None:
    assert status([], total=0, rows_in=0, planned=False) == "PENDING"
    assert status([(2, 2, 2, [])], total=0, rows_in=0, planned=False) == "IN_PROGRESS"  # indexed before planned
    assert status([(2, 2, 2, [])], total=2, rows_in=4) == "IN_PROGRESS"


def test_tally_summarises_failures_by_reason() -> None:
    counts = tally([(2, 1, 0, [failure(), failure(ReasonCode.NULL_OUTPUT)])])
    assert counts.rows_failed == 2
    assert counts.failure_summary == {"dimension_mismatch": 1, "null_output": 1}


def test_templates_fill_inputs_and_name_the_missing_one() -> None:
    stages = [{"searches": [{"query": "{{INPUT.query}}", "label": "q={{ INPUT.query }}!"}], "k": "{{INPUT.k}}"}]
    assert fill(stages, {"query": "cats", "k": 5}) == [{"searches": [{"query": "cats", "label": "q=cats!"}], "k": 5}]
    with pytest.raises(MissingInput) as info:
        fill("{{INPUT.missing}}", {})
    assert info.value.args[0] == "missing"


def test_feature_uris() -> None:
    uri = parse_feature_uri("mixpeek://text_embed@1.0.0/text_embed_v1_embedding")
    assert (uri.plugin_id, uri.feature) == ("text_embed_1_0_0", "text_embed_v1_embedding")
    assert parse_feature_uri("featurebus://text_embed@v1/emb").version == "1.0.0"
    with pytest.raises(ValueError, match="mixpeek://<plugin_name>@<version>/<feature_name>"):
        parse_feature_uri("text_embed/emb")


def test_one_search_keeps_scores_several_are_fused_by_rank() -> None:
    a = [SearchHit(document_id=d, collection_id="c", score=s) for d, s in (("x", 0.9), ("y", 0.8))]
    b = [SearchHit(document_id=d, collection_id="c", score=s) for d, s in (("y", 0.7), ("z", 0.6))]
    assert fuse([a], 10) == a
    fused = fuse([a, b], 10)
    assert fused[0].document_id == "y"  # ranked by both searches
    assert {h.document_id for h in fused} == {"x", "y", "z"}


def test_bucket_schema_and_blobs_name_the_field_and_the_fix() -> None:
    props = check_schema({"properties": {"text": {"type": "text", "required": True}}})
    blob_id = lambda o, p, i: f"{o}-{p}-{i}"  # noqa: E731
    [blob] = to_blobs("obj", [{"property": "text", "type": "text", "data": "hi"}], props, 1000, blob_id)
    assert (blob.blob_id, blob.data, blob.mime_type) == ("obj-text-0", "hi", "text/plain")
    with pytest.raises(SchemaError) as info:
        to_blobs("obj", {"property": "text", "data": "hi"}, props, 1000, blob_id)
    assert "list" in str(info.value) and info.value.hint and "[{" in info.value.hint
    with pytest.raises(SchemaError, match="'body' is not in the bucket's schema; its properties are \\['text'\\]"):
        to_blobs("obj", [{"property": "body", "type": "text", "data": "x"}], props, 1000, blob_id)
    with pytest.raises(SchemaError, match="limited to 10"):
        to_blobs("obj", [{"property": "text", "type": "text", "data": "x" * 11}], props, 10, blob_id)
    with pytest.raises(SchemaError, match="type must be one of"):
        check_schema({"properties": {"t": {"type": "string"}}})
