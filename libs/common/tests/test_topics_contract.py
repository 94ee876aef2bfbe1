"""Contract: every topic has one payload model, and payloads evolve additively."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from featurebus.common import events as ev
from featurebus.common.topics import TOPICS, dlq, topic_of

FIXED = {"plugin.uploaded", "plugin.scanned", "batch.ready", "vectors.produced"}


def test_fixed_topic_names_exist() -> None:
    assert set(TOPICS) >= FIXED


def test_every_event_model_has_exactly_one_topic() -> None:
    models = [m for m in vars(ev).values() if isinstance(m, type) and issubclass(m, ev.Event) and m is not ev.Event]
    for model in models:
        assert topic_of(model) in TOPICS
        assert TOPICS[topic_of(model)] is model
    assert len(set(TOPICS.values())) == len(TOPICS)


def test_unknown_model_names_the_fix() -> None:
    class Stray(ev.Event):
        pass

    with pytest.raises(KeyError, match=r"add it to featurebus\.common\.topics\.TOPICS"):
        topic_of(Stray)


def test_dlq_name() -> None:
    assert dlq("batch.ready") == "batch.ready.dlq"


def test_old_payload_without_new_fields_still_parses() -> None:
    # A producer from before `object_ids` existed, plus a field from a newer producer.
    old = {
        "event_id": "e1",
        "occurred_at": "2026-01-01T00:00:00Z",
        "schema_version": 1,
        "org_id": "org",
        "namespace_id": "ns",
        "bucket_id": "bkt",
        "batch_id": "bat",
        "collections": [],
        "field_from_the_future": {"x": 1},
    }
    event = ev.BatchTriggered.model_validate_json(json.dumps(old))
    assert event.object_ids is None
    assert not hasattr(event, "field_from_the_future")


def test_every_event_round_trips_through_json() -> None:
    plugin = ev.PluginRef(
        plugin_id="p_1_0_0", name="p", version="1.0.0", archive_uri="s3://b/k", archive_sha256="0" * 64
    )
    event = ev.BatchReady(
        org_id="o",
        namespace_id="n",
        bucket_id="b",
        batch_id="bat",
        frame_id="frm",
        frame_index=0,
        collection_id="col",
        plugin=plugin,
        frame_uri="s3://b/f",
        frame_sha256="1" * 64,
        row_count=3,
    )
    again = ev.BatchReady.model_validate_json(event.model_dump_json())
    assert again == event


def test_feature_spec_rejects_bad_values_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="embedding_dim"):
        ev.FeatureSpec(feature_name="v", embedding_dim=0)
    with pytest.raises(ValidationError, match="distance_metric"):
        ev.FeatureSpec(feature_name="v", embedding_dim=3, distance_metric="manhattan")
