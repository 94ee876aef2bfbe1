"""Restarting a service in the middle of a batch loses nothing and duplicates nothing."""

from __future__ import annotations

import uuid

import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROWS = 400
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"


def small_frames_plugin() -> bytes:
    """The example plugin with 8-row frames, so a batch spans many frames."""
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    assert '"batch_size": 64' in manifest
    return zip_plugin(EXAMPLES / "text_embed", {"manifest.py": manifest.replace('"batch_size": 64', '"batch_size": 8')})


@pytest.mark.parametrize("service", ["indexer", "inference"])
def test_restart_mid_batch_loses_and_duplicates_nothing(platform, api: Api, service: str) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"faults-{service}-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", small_frames_plugin())
    assert api.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "notes", "bucket_schema": {"properties": {"text": {"type": "text"}}}},
    )["bucket_id"]
    texts = [f"Maintenance note {i}: replaced filter number {i * 7} in unit {i % 13}." for i in range(ROWS)]
    api.add_texts(ns, bucket, texts)
    col = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "notes",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]}
    )["batch_id"]
    path = f"/v1/namespaces/{ns}/buckets/{bucket}/batches/{batch_id}"

    started = Api.wait(lambda: api.call("GET", path), lambda b: b.get("frames_done", 0) >= 2, timeout=180, every=0.1)
    assert started["status"] == "IN_PROGRESS", started
    platform.restart(service)

    done = api.wait_batch(ns, bucket, batch_id, timeout=300)
    assert done["status"] == "COMPLETED", done
    assert done["rows_in"] == done["rows_written"] == ROWS
    assert done["rows_failed"] == 0

    retriever = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={
            "name": "notes",
            "collection_identifiers": [col],
            "stages": [
                {
                    "stage_name": "search",
                    "stage_type": "filter",
                    "config": {
                        "stage_id": "feature_search",
                        "parameters": {
                            "searches": [{"feature_uri": FEATURE_URI, "query": "{{INPUT.q}}", "top_k": 1000}],
                            "final_top_k": 1000,
                        },
                    },
                }
            ],
        },
    )["retriever_id"]
    results = api.call(
        "POST", f"/v1/namespaces/{ns}/retrievers/{retriever}/execute", json={"input": {"q": "replaced filter"}}
    )["results"]
    ids = [r["document_id"] for r in results]
    assert len(ids) == len(set(ids)) == ROWS
