"""`featurebus plugin publish` against the running platform: upload, scan, deploy, with progress."""

from __future__ import annotations

import uuid

import pytest
from typer.testing import CliRunner

from featurebus.sdk.cli import app

from ._client import EXAMPLES, Api

pytestmark = [pytest.mark.e2e]


def test_publish_uploads_waits_for_the_scan_and_deploys(platform, api: Api) -> None:  # type: ignore[no-untyped-def]
    ns = api.namespace(f"cli-{uuid.uuid4().hex[:6]}")
    args = ["plugin", "publish", str(EXAMPLES / "text_embed"), "--namespace", ns,
            "--url", platform.base_url, "--key", platform.admin_key]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "waiting for the scan" in result.output and "text_embed_1_0_0 deployed for batch processing" in result.output
    status = api.call("GET", f"/v1/namespaces/{ns}/plugins/text_embed_1_0_0/status")
    assert status["status"] == "NOT_DEPLOYED" and status["batch_enabled"] is True

    again = CliRunner().invoke(app, args)  # same archive: idempotent
    assert again.exit_code == 0, again.output


def test_publish_into_an_unknown_namespace_says_why_and_uploads_nothing(platform) -> None:  # type: ignore[no-untyped-def]
    args = ["plugin", "publish", str(EXAMPLES / "text_embed"), "--namespace", "ns_nowhere",
            "--url", platform.base_url, "--key", platform.admin_key]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "404 namespace 'ns_nowhere' not found" in result.output and "hint: create it" in result.output
