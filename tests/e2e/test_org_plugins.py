"""An organization plugin on the real stack: uploaded once (POST /v1/plugins/uploads), scanned,
enabled in a namespace with params, indexing a bucket there; disabled, its batches are refused."""

from __future__ import annotations

import uuid

import pytest

from ._client import Api, text_embed_archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# A version no other e2e test uploads: organization plugins are seen by every namespace of the org.
VERSION = "7.0.0"
PLUGIN_ID = "text_embed_7_0_0"
TEXTS = ["My two cats curl up on the warm windowsill.", "The central bank raised interest rates."]


def test_an_org_plugin_enabled_in_a_namespace_indexes_there_and_disabled_is_refused(api: Api) -> None:
    ns = api.namespace(f"org-plugins-{uuid.uuid4().hex[:6]}")
    up = api.upload_org_plugin("text_embed", VERSION, text_embed_archive(VERSION))
    assert up["plugin_id"] == PLUGIN_ID and up["organization_id"].startswith("org_")
    scanned = api.wait_org_scan(PLUGIN_ID)
    assert scanned["validation_status"] == "passed", scanned
    assert scanned["feature_uri"] == f"mixpeek://text_embed@{VERSION}/text_embed_v1_embedding"
    assert PLUGIN_ID in [p["plugin_id"] for p in api.call("GET", "/v1/plugins")["plugins"]]

    bucket = api.text_bucket(ns, "articles", TEXTS)
    collection = {
        "name": "articles-org",
        "feature_extractors": [
            {"feature_extractor_name": "text_embed", "version": VERSION, "parameters": {"encode_batch_size": 8}}
        ],
        "source": {"type": "bucket", "bucket_ids": [bucket]},
    }
    refused = api.call("POST", f"/v1/namespaces/{ns}/collections", json=collection, expect=409)
    assert "not enabled in this namespace" in refused["detail"]
    assert f"/plugins/org/{PLUGIN_ID}/enable" in refused["hint"]
    [available] = [
        p for p in api.call("GET", f"/v1/namespaces/{ns}/plugins/available")["plugins"] if p["plugin_id"] == PLUGIN_ID
    ]
    assert (available["enabled_in_namespace"], available["validation_status"]) == (False, "passed")

    enabled = api.call(
        "POST", f"/v1/namespaces/{ns}/plugins/org/{PLUGIN_ID}/enable", json={"params": {"encode_batch_size": 16}}
    )
    assert (enabled["success"], enabled["deployment_status"], enabled["namespace_id"]) == (True, "deployed", ns)
    [available] = [
        p for p in api.call("GET", f"/v1/namespaces/{ns}/plugins/available")["plugins"] if p["plugin_id"] == PLUGIN_ID
    ]
    assert (available["enabled_in_namespace"], available["params"]) == (True, {"encode_batch_size": 16})

    collection_id = api.call("POST", f"/v1/namespaces/{ns}/collections", json=collection)["collection_id"]
    trigger = f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger"
    batch = api.call("POST", trigger, json={"collection_ids": [collection_id]})
    done = api.wait_batch(ns, bucket, batch["batch_id"], timeout=300)
    assert (done["status"], done["rows_written"]) == ("COMPLETED", len(TEXTS)), done

    disabled = api.call("POST", f"/v1/namespaces/{ns}/plugins/org/{PLUGIN_ID}/disable")
    assert (disabled["success"], disabled["enabled"]) == (True, False)
    refused = api.call("POST", trigger, json={"collection_ids": [collection_id]}, expect=409)
    assert PLUGIN_ID in refused["detail"] and f"/plugins/org/{PLUGIN_ID}/enable" in refused["hint"], refused

    # the organization keeps the plugin while a collection uses it
    in_use = api.call("DELETE", f"/v1/plugins/{PLUGIN_ID}", expect=409)
    assert collection_id in in_use["detail"]
    api.call("DELETE", f"/v1/namespaces/{ns}/collections/{collection_id}")
    assert api.call("DELETE", f"/v1/plugins/{PLUGIN_ID}")["success"] is True
    api.call("GET", f"/v1/plugins/{PLUGIN_ID}", expect=404)
