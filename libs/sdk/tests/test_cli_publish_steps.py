"""`featurebus plugin publish` against an in-memory twin of the plugin routes: each step's state on
stderr as it happens (upload, confirm, scan, deploy), the outcome on stdout, ``--json``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from featurebus.sdk import cli, publish_steps
from featurebus.sdk.client import Client

runner = CliRunner()
KEY, NS = "key-1", "ns_1"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plugins" / "text_embed"
VIOLATION = {
    "code": "FORBIDDEN_IMPORT",
    "severity": "ERROR",
    "filename": "processors/core.py",
    "line": 1,
    "message": "imports subprocess",
    "hint": "plugins may not spawn processes",
}


class FakePlugins(httpx.BaseTransport):
    """Upload, presigned PUT, confirm, a scan that answers ``scanning`` ``scans`` times, deploy."""

    def __init__(self, verdict: str = "passed", scans: int = 2) -> None:
        self.verdict, self.scans = verdict, scans
        self.put: bytes | None = None
        self.calls: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append((request.method, path))
        if request.url.host == "store.test":
            assert "authorization" not in request.headers and "transfer-encoding" not in request.headers
            self.put = b"".join(bytes(c) for c in request.stream)  # type: ignore[union-attr]
            assert int(request.headers["content-length"]) == len(self.put)
            return httpx.Response(200)
        request.read()
        m = re.fullmatch(r"/v1/namespaces/([^/]+)/plugins/(.*)", path)
        assert m, path
        if m[1] != NS:
            return httpx.Response(
                404, json={"detail": f"namespace {m[1]!r} not found", "hint": "create it with POST /v1/namespaces"}
            )
        rest = m[2]
        if rest == "uploads":
            body = json.loads(request.content)
            pid = f"{body['name']}_{body['version'].replace('.', '_')}"
            return httpx.Response(
                201, json={"upload_id": "up_1", "presigned_url": "http://store.test/up_1?sig=s", "plugin_id": pid}
            )
        if rest == "uploads/up_1/confirm":
            assert self.put is not None
            return httpx.Response(200, json={"plugin_id": "text_embed_1_0_0"})
        if rest.endswith("/status"):
            self.scans -= 1
            state = "scanning" if self.scans >= 0 else self.verdict
            violations = [VIOLATION] if state == "failed" else []
            return httpx.Response(
                200, json={"scan": {"status": state, "passed": state == "passed", "violations": violations}}
            )
        if rest.endswith("/deploy"):
            assert request.url.params["deployment_type"] == "batch_only"
            return httpx.Response(
                200,
                json={"plugin_id": "text_embed_1_0_0", "status": "NOT_DEPLOYED", "batch_enabled": True, "message": ""},
            )
        raise AssertionError(path)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePlugins:
    plugins = FakePlugins()
    monkeypatch.setattr(cli, "Client", lambda url, key: Client(url, key, transport=plugins))
    monkeypatch.setattr(publish_steps.time, "sleep", lambda s: None)
    monkeypatch.setenv("FEATUREBUS_API_KEY", KEY)
    return plugins


def publish(*args: str) -> Any:
    return runner.invoke(cli.app, ["plugin", "publish", str(EXAMPLE), "--url", "http://registry.test", *args])


def test_publish_shows_each_step_as_it_happens_and_the_outcome_on_stdout(fake: FakePlugins) -> None:
    result = publish("--namespace", NS)
    assert result.exit_code == 0, result.output
    assert result.stdout == "text_embed_1_0_0 deployed for batch processing (status NOT_DEPLOYED)\n"
    steps = result.stderr.splitlines()
    assert steps[0].startswith("scan (local): passed")
    assert steps[1].startswith("upload: text_embed 1.0.0: 0 B of ")
    assert steps[2:] == [
        steps[2],
        "confirm: text_embed_1_0_0; waiting for the scan",
        "scan: scanning",  # once, however many looks it took
        "scan: passed",
        "deploy: batch_only",
        "deploy: NOT_DEPLOYED (batch enabled)",
    ]
    assert steps[2].startswith("upload: ") and steps[2].endswith(" sent")
    assert fake.put is not None and len(fake.put) > 0
    assert [c for c in fake.calls if c[1].endswith("/status")] == [
        ("GET", f"/v1/namespaces/{NS}/plugins/text_embed_1_0_0/status")
    ] * 3


def test_publish_json_prints_the_outcome_alone(fake: FakePlugins) -> None:
    result = publish("--namespace", NS, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["plugin_id"] == "text_embed_1_0_0" and doc["scan"]["status"] == "passed"
    assert doc["deploy"]["batch_enabled"] is True and doc["local_scan"]["passed"] is True
    assert doc["size_bytes"] == len(fake.put or b"")


def test_a_failed_platform_scan_prints_its_violations_and_exits_1(fake: FakePlugins) -> None:
    fake.verdict = "failed"
    result = publish("--namespace", NS)
    assert result.exit_code == 1, result.output
    assert "scan: failed" in result.stderr
    assert "processors/core.py:1 [ERROR] imports subprocess" in result.stderr
    assert "hint: plugins may not spawn processes" in result.stderr
    assert "text_embed_1_0_0 rejected by the platform's scan" in result.stderr and result.stdout == ""
    assert not [c for c in fake.calls if c[1].endswith("/deploy")]
    as_json = publish("--namespace", NS, "--json")
    assert as_json.exit_code == 1 and json.loads(as_json.stdout)["scan"]["violations"][0]["code"] == "FORBIDDEN_IMPORT"


def test_an_unknown_namespace_gives_the_apis_detail_and_hint(fake: FakePlugins) -> None:
    result = publish("--namespace", "ns_nowhere")
    assert result.exit_code == 1
    assert "404 namespace 'ns_nowhere' not found" in result.stderr and "hint: create it" in result.stderr
    assert fake.put is None


def test_an_unreachable_registry_names_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    monkeypatch.setattr(cli, "Client", lambda url, key: Client(url, key, transport=httpx.MockTransport(refuse)))
    result = runner.invoke(
        cli.app, ["plugin", "publish", str(EXAMPLE), "--namespace", NS, "--url", "http://127.0.0.1:9", "--key", KEY]
    )
    assert result.exit_code == 1 and "cannot reach the registry at http://127.0.0.1:9" in result.stderr


def test_on_a_terminal_each_step_is_a_line_with_its_state() -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    with publish_steps.StepProgress(console=console) as steps:
        steps.state("upload", "0 B of 2.0 MiB", done=0, total=2)
        steps.finish("upload", "2.0 MiB sent")
        steps.state("scan", "scanning (1s)")
        steps.finish("scan", "passed")
    drawn = out.getvalue()
    assert "2.0 MiB sent" in drawn and "passed" in drawn and "✓" in drawn
