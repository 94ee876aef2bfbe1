"""Bad requests get clear 4xx errors; a plugin that fails its scan says why."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def ns(api: Api) -> str:
    return api.namespace(f"errors-{uuid.uuid4().hex[:6]}")


def test_no_key_and_wrong_key_are_401(platform) -> None:  # type: ignore[no-untyped-def]
    anonymous = httpx.get(f"{platform.base_url}/v1/namespaces")
    assert anonymous.status_code == 401
    assert "detail" in anonymous.json()
    wrong = httpx.get(f"{platform.base_url}/v1/namespaces", headers={"Authorization": "Bearer fb_wrong"})
    assert wrong.status_code == 401


def test_unknown_namespace_is_404(api: Api) -> None:
    body = api.call("GET", "/v1/namespaces/ns_does_not_exist", expect=404)
    assert "ns_does_not_exist" in body["detail"]


def test_blobs_as_a_dict_gets_a_hint(api: Api, ns: str) -> None:
    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "b", "bucket_schema": {"properties": {"text": {"type": "text"}}}},
    )["bucket_id"]
    body = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket}/objects",
        json={"blobs": {"property": "text", "type": "text", "data": "x"}},
        expect=422,
    )
    assert "blobs" in str(body) and "list" in str(body.get("hint", "")) + str(body["detail"])
    unknown = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket}/objects",
        json={"blobs": [{"property": "body", "type": "text", "data": "x"}]},
        expect=422,
    )
    assert "body" in str(unknown) and "text" in str(unknown)


def test_a_bulk_request_with_one_bad_object_adds_none_and_names_it(api: Api, ns: str) -> None:
    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "bulk", "bucket_schema": {"properties": {"text": {"type": "text"}}}},
    )["bucket_id"]
    path = f"/v1/namespaces/{ns}/buckets/{bucket}/objects/batch"
    good = {"blobs": [{"property": "text", "type": "text", "data": "fine"}]}
    bad = {"blobs": [{"property": "txt", "type": "text", "data": "typo in the property"}]}
    body = api.call("POST", path, json={"objects": [good, bad, good]}, expect=422)
    assert body["detail"].startswith("objects[1].blobs[0].property 'txt'"), body
    repeated = api.call("POST", path, json={"objects": [{**good, "object_id": "o1"}] * 2}, expect=422)
    assert "o1" in repeated["detail"] and "own object_id" in repeated["hint"]
    too_many = api.call("POST", path, json={"objects": [good] * 1001}, expect=422)
    assert "1001" in too_many["detail"] and "1000" in too_many["hint"]
    assert api.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket}")["object_count"] == 0  # nothing half-added

    added = api.call("POST", path, json={"objects": [good, {**good, "metadata": {"n": 2}}]})
    assert added["count"] == 2 and len({o["object_id"] for o in added["objects"]}) == 2
    assert api.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket}")["object_count"] == 2


def test_plugin_with_the_guides_wrong_feature_keys_fails_its_scan(api: Api, ns: str) -> None:
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    wrong = manifest.replace('"feature_name"', '"name"')
    assert wrong != manifest
    archive = zip_plugin(EXAMPLES / "text_embed", {"manifest.py": wrong})
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", archive)
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "failed"
    assert status["status"] == "FAILED"
    assert any("feature_name" in v["message"] for v in status["scan"]["violations"]), status
    deploy = api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only", expect=409)
    assert "detail" in deploy


def test_plugin_importing_subprocess_is_rejected_with_file_and_line(api: Api, ns: str) -> None:
    core = (EXAMPLES / "text_embed" / "processors" / "core.py").read_text()
    archive = zip_plugin(EXAMPLES / "text_embed", {"processors/core.py": "import subprocess\n" + core})
    plugin_id = api.upload_plugin(ns, "evil_embed", "1.0.0", archive)
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "failed"
    hits = [v for v in status["scan"]["violations"] if "subprocess" in v["message"]]
    assert hits and hits[0]["filename"].endswith("processors/core.py") and hits[0]["line"] == 1


def test_retriever_with_collection_ids_gets_the_guides_hint(api: Api, ns: str) -> None:
    body = api.call(
        "POST",
        f"/v1/namespaces/{ns}/retrievers",
        json={"name": "r", "collection_ids": ["col_x"], "stages": []},
        expect=422,
    )
    assert "collection_identifiers" in str(body)
