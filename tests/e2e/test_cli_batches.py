"""`featurebus batch run|status` against the running platform: a small bucket with one row that
fails, followed to its end; the exit code, the counts per collection and the failure summary."""

from __future__ import annotations

import json
import uuid

import pytest

from ._client import EXAMPLES, Api, cli, zip_plugin

pytestmark = [pytest.mark.e2e]

FAILING = "this row fails"
EMBEDDING = "text_embed_v1_embedding"


def one_row_fails() -> bytes:
    """The example plugin, answering a zero vector (a reported row failure) for the text FAILING."""
    core = (EXAMPLES / "text_embed" / "processors" / "core.py").read_text()
    line = f'        batch["{EMBEDDING}"] = embeddings.tolist()\n'
    assert line in core
    zeroed = (
        f'        batch["{EMBEDDING}"] = [\n'
        f"            [0.0] * len(v) if t == {FAILING!r} else v for t, v in zip(texts, embeddings.tolist())\n"
        "        ]\n"
    )
    return zip_plugin(EXAMPLES / "text_embed", {"processors/core.py": core.replace(line, zeroed)})


def test_batch_run_follows_the_batch_and_reports_the_failed_row(api: Api) -> None:
    ns = api.namespace(f"cli-batch-{uuid.uuid4().hex[:6]}")
    api.deploy_batch_plugin(ns, "text_embed", "1.0.0", one_row_fails())
    texts = ["a first text", FAILING, "a third text", "the fourth"]
    bucket = api.text_bucket(ns, "b", texts)
    collection = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "c",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket]},
        },
    )["collection_id"]

    run = cli(api, "batch", "run", bucket, "--namespace", ns, "--collection", "c", "--json", "--every", "0.3")
    assert run.returncode == 1, (run.stdout, run.stderr)  # some rows failed
    assert run.stderr == ""  # --json: the document alone
    doc = json.loads(run.stdout)
    assert doc["status"] == "COMPLETED_WITH_ERRORS", doc
    assert doc["collections"] == [{"collection_id": collection, "rows_in": 4, "rows_written": 3, "rows_failed": 1}]
    assert doc["failure_summary"] == {"zero_vector": 1} and doc["failed_documents_total"] == 1
    [row] = doc["failed_documents"]
    assert row["reason"] == "zero_vector" and row["collection_id"] == collection
    assert EMBEDDING in row["message"] and "RowError" in row["hint"]
    assert doc["exit_code"] == 1 and doc["retry"] == f"featurebus batch retry {doc['batch_id']}"

    # The batch by its id alone (its task names the namespace and bucket), as text for a person.
    status = cli(api, "batch", "status", doc["batch_id"])
    assert status.returncode == 1, (status.stdout, status.stderr)
    assert f"batch {doc['batch_id']} COMPLETED_WITH_ERRORS: 3 of 4 rows written, 1 failed" in status.stdout
    assert f"  collection {collection}: 3 written, 1 failed" in status.stdout
    assert "  zero_vector  1" in status.stdout and "hint: a zero vector is a placeholder" in status.stdout

    unknown = cli(api, "batch", "status", "btch_nowhere")
    assert unknown.returncode == 3 and "batch 'btch_nowhere' not found" in unknown.stderr
