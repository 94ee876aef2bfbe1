"""The guide's "Upload and Deploy" run as its curl lines are written: `-d` JSON without a content
type, and the deploy sent right after the confirm, while the scan is still running."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e]

CURL_FORM = {"content-type": "application/x-www-form-urlencoded"}  # what `curl -d '...'` sends


def upload_confirm_deploy(platform, ns: str, name: str, archive: bytes) -> tuple[str, httpx.Response]:  # type: ignore[no-untyped-def]
    http = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {platform.admin_key}"})
    body = '{"name": "%s", "version": "1.0.0"}' % name  # noqa: UP031 - the guide's literal body
    up = http.post(f"/v1/namespaces/{ns}/plugins/uploads", content=body, headers=CURL_FORM)
    assert up.status_code in (200, 201), up.text
    assert httpx.put(up.json()["presigned_url"], content=archive).status_code == 200
    upload_id, plugin_id = up.json()["upload_id"], up.json()["plugin_id"]
    assert http.post(f"/v1/namespaces/{ns}/plugins/uploads/{upload_id}/confirm").status_code in (200, 201)
    return plugin_id, http.post(f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")


def test_a_batch_deploy_sent_during_the_scan_is_carried_out_when_it_passes(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"quick-{uuid.uuid4().hex[:6]}")
    plugin_id, deployed = upload_confirm_deploy(platform, ns, "text_embed", zip_plugin(EXAMPLES / "text_embed"))
    # The scan takes two Kafka hops and the archive's analysis; the deploy follows the confirm at once.
    assert deployed.status_code == 202, deployed.text
    assert deployed.json()["status"] == "PENDING" and "when it passes" in deployed.json()["message"]
    status = api.wait(
        lambda: api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"),
        lambda s: s["status"] != "PENDING" and s["scan"]["status"] != "scanning",
        timeout=90,
    )
    assert (status["status"], status["batch_enabled"], status["deployment_type"]) == (
        "NOT_DEPLOYED",
        True,
        "batch_only",
    ), status
    again = api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    assert again["batch_enabled"] is True  # deploying again is harmless


def test_a_deploy_sent_during_a_failing_scan_ends_failed_with_the_violations(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"quick-{uuid.uuid4().hex[:6]}")
    core = (EXAMPLES / "text_embed" / "processors" / "core.py").read_text()
    archive = zip_plugin(EXAMPLES / "text_embed", {"processors/core.py": "import subprocess\n" + core})
    plugin_id, deployed = upload_confirm_deploy(platform, ns, "text_embed", archive)
    assert deployed.status_code == 202 and deployed.json()["status"] == "PENDING", deployed.text
    status = api.wait(
        lambda: api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"),
        lambda s: s["scan"]["status"] != "scanning" and s["status"] != "PENDING",
        timeout=90,
    )
    assert (status["status"], status["batch_enabled"]) == ("FAILED", False), status
    assert "subprocess" in status["error"], status


def test_a_plugin_sent_as_a_multipart_form_is_scanned_and_deployed_as_an_uploaded_one(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"form-{uuid.uuid4().hex[:6]}")
    http = httpx.Client(base_url=platform.base_url, headers={"Authorization": f"Bearer {platform.admin_key}"})
    archive = zip_plugin(EXAMPLES / "text_embed")
    # curl -F file=@text_embed.zip -F name=text_embed -F version=1.0.0 .../plugins
    sent = http.post(
        f"/v1/namespaces/{ns}/plugins",
        files={"file": ("text_embed.zip", archive, "application/zip")},
        data={"name": "text_embed", "version": "1.0.0"},
    )
    assert sent.status_code == 200, sent.text
    plugin_id = sent.json()["plugin_id"]
    assert (plugin_id, sent.json()["validation_status"]) == ("text_embed_1_0_0", "pending")
    deployed = http.post(f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    assert deployed.status_code in (200, 202), deployed.text
    status = api.wait(
        lambda: api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"),
        lambda s: s["status"] != "PENDING" and s["scan"]["status"] != "scanning",
        timeout=90,
    )
    assert (status["scan"]["status"], status["batch_enabled"]) == ("passed", True), status
    assert status["feature_uri"] == "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
