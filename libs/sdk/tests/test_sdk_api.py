"""The guide's import paths and helpers behave as the guide documents them."""

from __future__ import annotations

import asyncio
import http.server
import importlib
import threading
import time
import urllib.error
from pathlib import Path

import pytest

import featurebus.sdk as sdk
from featurebus.common.events import ReasonCode
from featurebus.sdk.container import LLMNotConfigured, PluginContainer, SecretNotGranted, Secrets
from featurebus.sdk.pipeline import PipelineDefinition, RowCondition, StepDefinition, build_pipeline_steps
from featurebus.sdk.rows import FailedCall


@pytest.mark.parametrize(
    ("module", "name", "obj"),
    [
        ("engine.plugins.extractors.pipeline", "StepDefinition", sdk.StepDefinition),
        ("engine.plugins.extractors.pipeline", "build_pipeline_steps", sdk.build_pipeline_steps),
        ("shared.plugins", "open_asset", sdk.open_asset),
        ("shared.plugins.sdk", "parallel_io", sdk.parallel_io),
        ("shared.plugins.sdk", "concurrent_api_calls", sdk.concurrent_api_calls),
        ("shared.plugins.inference.serve", "BaseInferenceService", sdk.BaseInferenceService),
        ("shared.plugins.inference.batch", "BaseBatchInferenceService", sdk.BaseBatchInferenceService),
        ("shared.inference.registry", "get_batch_service", sdk.get_batch_service),
        ("engine.models", "LazyModelMixin", sdk.LazyModelMixin),
        ("shared.models.loader", "load_namespace_model", sdk.load_namespace_model),
        ("shared.utilities.files", "resolve_url_to_local_path", sdk.resolve_url_to_local_path),
    ],
)
def test_guide_import_paths_resolve_to_the_same_objects(module: str, name: str, obj: object) -> None:
    sdk.install_aliases()
    assert getattr(importlib.import_module(module), name) is obj


def test_disabled_steps_are_left_out() -> None:
    steps = build_pipeline_steps(
        PipelineDefinition(
            name="p",
            version="1",
            steps=[StepDefinition(service_class=str, enabled=False), StepDefinition(service_class=int)],
        )
    )
    assert [s.service_class for s in steps] == [int]


@pytest.mark.parametrize(
    ("condition", "mime", "matches"),
    [
        (RowCondition.IS_TEXT, "text/plain", True),
        (RowCondition.IS_IMAGE, "image/jpeg", True),
        (RowCondition.IS_IMAGE, "text/plain", False),
        (RowCondition.IS_PDF, "application/pdf", True),
        (RowCondition.IS_VIDEO, "audio/mpeg", False),
        (RowCondition.ALWAYS, None, True),
    ],
)
def test_row_conditions_match_mime_types(condition: RowCondition, mime: str | None, matches: bool) -> None:
    assert condition.matches(mime) is matches


def test_parallel_io_returns_index_to_result_and_skips_failures() -> None:
    def work(x: int) -> int:
        if x == 2:
            raise OSError("unreadable")
        return x * 10

    assert sdk.parallel_io([0, 1, 2, 3], work, max_workers=4) == {0: 0, 1: 10, 3: 30}


def test_concurrent_api_calls_bounds_concurrency_and_keeps_order() -> None:
    running, peak = 0, 0

    async def call(i: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1
        if i == 5:
            raise RuntimeError("rate limited")
        return i

    began = time.monotonic()
    results = sdk.concurrent_api_calls(list(range(64)), call, max_concurrent=10)
    elapsed = time.monotonic() - began
    assert peak == 10
    assert results[:5] == [0, 1, 2, 3, 4] and results[63] == 63
    failed = results[5]
    assert isinstance(failed, FailedCall) and failed.reason is ReasonCode.API_ERROR
    assert "item 5 of 64 failed: RuntimeError: rate limited" in failed.message
    assert elapsed < 3.0  # 7 waves of 0.1 s, not 64 sequential calls


def test_concurrent_api_calls_works_inside_a_running_loop() -> None:
    async def double(i: int) -> int:
        return 2 * i

    async def main() -> list[int | None]:
        return sdk.concurrent_api_calls([1, 2], double)

    assert asyncio.run(main()) == [2, 4]


def test_llm_without_a_provider_fails_clearly_and_secrets_name_the_missing_key() -> None:
    container = PluginContainer(secrets=Secrets({"API_KEY": "s3cr3t"}))
    with pytest.raises(LLMNotConfigured, match="no LLM provider"):
        asyncio.run(container.llm.generate(instruction="x"))
    assert asyncio.run(container.secrets.get("API_KEY")) == "s3cr3t"
    assert asyncio.run(container.secrets.list()) == ["API_KEY"]
    with pytest.raises(SecretNotGranted, match="OTHER"):
        asyncio.run(container.secrets.get("OTHER"))


def test_unknown_builtin_service_lists_the_available_ones() -> None:
    with pytest.raises(KeyError, match="all-MiniLM-L6-v2"):
        sdk.get_batch_service("google/siglip-base-patch16-224")


@pytest.mark.slow
def test_concurrent_api_calls_takes_about_7s_for_64_one_second_calls_at_10() -> None:
    """The guide's promise: 64 calls of 1 s at max_concurrent=10 take ~7 s, not ~64 s."""

    async def one_second(i: int) -> int:
        await asyncio.sleep(1.0)
        return i

    began = time.monotonic()
    results = sdk.concurrent_api_calls(list(range(64)), one_second, max_concurrent=10)
    elapsed = time.monotonic() - began
    assert results == list(range(64))
    assert 6.9 <= elapsed < 12


@pytest.mark.integration
def test_http_assets_follow_redirects_and_a_missing_one_raises() -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/cat.jpg")
                self.end_headers()
            elif self.path == "/cat.jpg":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"\xff\xd8 not really a jpeg")
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        with sdk.open_asset(f"{base}/moved", suffix=".jpg") as path:
            assert path.endswith(".jpg") and Path(path).read_bytes() == b"\xff\xd8 not really a jpeg"
        assert not Path(path).exists()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            sdk.download_asset(f"{base}/missing")
    finally:
        server.shutdown()
        server.server_close()
