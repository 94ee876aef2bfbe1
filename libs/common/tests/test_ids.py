from __future__ import annotations

import uuid

import pytest

from featurebus.common import ids


@pytest.mark.parametrize(
    ("given", "normalised"),
    [("v1", "1.0.0"), ("1.0", "1.0.0"), ("v2.1", "2.1.0"), ("1.0.0", "1.0.0"), (" 3.4.5 ", "3.4.5")],
)
def test_versions_are_normalised_as_the_guide_says(given: str, normalised: str) -> None:
    assert ids.normalize_version(given) == normalised


@pytest.mark.parametrize("bad", ["", "latest", "1.0.0.0", "1.x", "v"])
def test_bad_versions_name_the_accepted_forms(bad: str) -> None:
    with pytest.raises(ValueError, match=r"X\.Y\.Z"):
        ids.normalize_version(bad)


def test_plugin_id_format() -> None:
    assert ids.plugin_id("text_embed", "1.0.0") == "text_embed_1_0_0"
    assert ids.plugin_id("text_embed", "v1") == "text_embed_1_0_0"


def test_replay_safe_ids_are_deterministic_and_distinct() -> None:
    a = ids.document_id("col", "obj", "blob")
    assert a == ids.document_id("col", "obj", "blob")
    assert a != ids.document_id("col", "obj", "blob2")
    p = ids.point_id("col", a, "plug_1_0_0")
    assert uuid.UUID(p)  # Qdrant needs a UUID
    assert p == ids.point_id("col", a, "plug_1_0_0")
    assert p != ids.point_id("col", a, "other_1_0_0")


def test_new_ids_are_unique() -> None:
    assert len({ids.new_id("ns") for _ in range(1000)}) == 1000
