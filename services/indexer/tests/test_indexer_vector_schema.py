from __future__ import annotations

import math

import numpy as np
import pytest

from featurebus.common.events import ReasonCode, VectorIndex
from featurebus.indexer.vector_schema import (
    SchemaError,
    VectorSpec,
    check_vectors,
    row_failure,
    schema_differences,
    schema_from_indexes,
)

SCHEMA = {"text_emb": VectorSpec("text_emb", 3, "cosine"), "img_emb": VectorSpec("img_emb", 2, "euclid")}


def index(name: str, dims: int = 3, distance: str = "cosine", plugin_id: str = "p_1_0_0") -> VectorIndex:
    return VectorIndex(
        name=name, dimensions=dims, distance=distance, feature_uri=f"mixpeek://p@1.0.0/{name}", plugin_id=plugin_id
    )


def test_valid_vectors_pass_as_floats() -> None:
    clean, problems = check_vectors("col_1", "doc_1", {"text_emb": np.array([1, 2, 3], dtype=np.float32)}, SCHEMA)
    assert problems == []
    assert clean == {"text_emb": [1.0, 2.0, 3.0]}


def test_unknown_vector_name_names_collection_vector_and_known_names() -> None:
    _, problems = check_vectors("col_1", "doc_1", {"txt_emb": [1.0, 2.0, 3.0]}, SCHEMA)
    (problem,) = problems
    assert problem.reason is ReasonCode.UNKNOWN_VECTOR_NAME and problem.vector_name == "txt_emb"
    assert "col_1" in problem.message and "'txt_emb'" in problem.message
    assert "['img_emb', 'text_emb']" in problem.message


def test_wrong_length_is_a_dimension_mismatch_with_expected_and_got() -> None:
    _, problems = check_vectors("col_1", "doc_1", {"text_emb": [1.0, 2.0]}, SCHEMA)
    (problem,) = problems
    assert problem.reason is ReasonCode.DIMENSION_MISMATCH
    assert "has dimension 2, expected 3" in problem.message and "doc_1" in problem.message


@pytest.mark.parametrize("value", [[1.0, math.nan, 2.0], ["a", "b", "c"], [[1.0, 2.0, 3.0]]])
def test_non_numeric_or_non_finite_vectors_are_invalid(value: object) -> None:
    clean, problems = check_vectors("col_1", "doc_1", {"text_emb": value}, SCHEMA)
    assert clean == {} and [p.reason for p in problems] == [ReasonCode.INVALID_VECTOR]


def test_null_cells_are_absent_vectors_but_a_row_needs_one() -> None:
    clean, problems = check_vectors("col_1", "doc_1", {"text_emb": [0.0, 1.0, 0.0], "img_emb": None}, SCHEMA)
    assert problems == [] and list(clean) == ["text_emb"]
    _, problems = check_vectors("col_1", "doc_1", {"text_emb": None}, SCHEMA)
    assert [p.reason for p in problems] == [ReasonCode.INVALID_VECTOR]


def test_one_failure_per_row_keeps_every_problem_and_a_hint() -> None:
    _, problems = check_vectors("col_1", "doc_1", {"nope": [1.0], "text_emb": [1.0]}, SCHEMA)
    failure = row_failure("doc_1", "obj_1", problems)
    assert failure.reason is ReasonCode.UNKNOWN_VECTOR_NAME
    assert "'nope'" in failure.message and "dimension 1, expected 3" in failure.message
    assert failure.hint and "feature_name" in failure.hint


def test_schema_from_indexes_merges_agreeing_duplicates_and_rejects_contradictions() -> None:
    schema = schema_from_indexes("col_1", [index("a"), index("a", plugin_id="q_1_0_0"), index("b", 2, "dot")])
    assert schema == {"a": VectorSpec("a", 3, "cosine"), "b": VectorSpec("b", 2, "dot")}
    with pytest.raises(SchemaError, match="declared twice"):
        schema_from_indexes("col_1", [index("a"), index("a", dims=4)])
    with pytest.raises(SchemaError, match="no vector_indexes"):
        schema_from_indexes("col_1", [])


def test_schema_differences_name_each_vector() -> None:
    assert schema_differences(SCHEMA, SCHEMA) == []
    wanted = {"text_emb": VectorSpec("text_emb", 4, "cosine"), "new": VectorSpec("new", 2, "dot")}
    assert schema_differences(SCHEMA, wanted) == [
        "vector 'img_emb' is not wanted",
        "vector 'new' is missing (wanted 2-d dot)",
        "vector 'text_emb' is 3-d cosine, wanted 4-d cosine",
    ]
