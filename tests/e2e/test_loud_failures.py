"""What the guide says fails silently fails loudly: the batch says so, rows carry reasons, logs name them."""

from __future__ import annotations

import uuid

import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_batch(api: Api, archive: bytes, texts: list[str]) -> tuple[str, str, dict]:
    ns = api.namespace(f"loud-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "text_embed", "1.0.0", archive)
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    bucket = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets",
        json={"name": "b", "bucket_schema": {"properties": {"text": {"type": "text"}}}},
    )["bucket_id"]
    api.add_texts(ns, bucket, texts)
    col = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "c",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]}
    )["batch_id"]
    done = api.wait_batch(ns, bucket, batch_id)
    failed = api.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/{batch_id}/failed-documents")
    return col, batch_id, {"batch": done, "failed": failed}


def failed_rows(failed: dict | list) -> list[dict]:
    return failed if isinstance(failed, list) else failed.get("results") or failed.get("documents") or []


def test_dimension_mismatch_fails_the_batch_and_names_the_vector(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    archive = zip_plugin(EXAMPLES / "text_embed", {"manifest.py": manifest.replace("384", "256")})
    col, _, out = run_batch(api, archive, ["alpha", "beta", "gamma"])
    batch = out["batch"]
    assert batch["status"] == "FAILED", batch
    assert batch["rows_written"] == 0 and batch["rows_failed"] == 3
    assert batch["failure_summary"] == {"dimension_mismatch": 3}
    rows = failed_rows(out["failed"])
    assert {r["reason"] for r in rows} == {"dimension_mismatch"} and len(rows) == 3
    assert "256" in rows[0]["message"] and "384" in rows[0]["message"]
    log = platform.log("indexer")
    assert any("ERROR" in line and "dimension_mismatch" in line and col in line for line in log.splitlines())


def test_plugin_reading_batch_text_gets_the_guides_hint(api: Api) -> None:
    core = (EXAMPLES / "text_embed" / "processors" / "core.py").read_text()
    assert 'batch["data"]' in core
    archive = zip_plugin(
        EXAMPLES / "text_embed", {"processors/core.py": core.replace('batch["data"]', 'batch["text"]')}
    )
    _, _, out = run_batch(api, archive, ["one", "two"])
    assert out["batch"]["status"] == "FAILED"
    rows = failed_rows(out["failed"])
    assert len(rows) == 2 and rows[0]["reason"] == "plugin_exception"
    assert "batch['data']" in (rows[0].get("hint") or "") + rows[0]["message"]
