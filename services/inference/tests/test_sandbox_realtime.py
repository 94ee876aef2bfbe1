"""realtime.py runs in the same sandbox as batch code: it answers, sees no credential, and what it
may not do fails the request with ``sandbox_violation`` while the worker lives on."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from inference_twins import TOY_MANIFEST, TOY_PIPELINE, toy_archive

from featurebus.common.events import ReasonCode
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker
from featurebus.runtime import PluginError

pytestmark = pytest.mark.integration  # real processes and namespaces

SECRET = "fb-secret-realtime-51f0"

REALTIME = """
import json, os
from shared.plugins.inference.serve import BaseInferenceService

class InferenceService(BaseInferenceService):
    def __init__(self):
        super().__init__()
        self.pid = os.getpid()

    async def __call__(self, inputs, parameters):
        if "read" in inputs:
            return {"embedding": [0.0, 0.0], "found": open(inputs["read"]).read()}
        text = inputs.get("text", "")
        return {
            "embedding": [float(len(text)), parameters.get("scale", 1.0)],
            "env": json.dumps(dict(os.environ)),
            "uid": os.getuid(),
            "pid": self.pid,
        }
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxedWorker]:
    data = Path(tempfile.mkdtemp(prefix="fb-sandbox-rt-", dir="/var/tmp"))
    (data / "admin-api-key").write_text(SECRET)
    os.environ["FEATUREBUS_S3_SECRET_KEY"] = SECRET  # what the Ray worker holds; the plugin must not
    config = SandboxConfig(memory_bytes=2 * 1024**3, frame_cpu_seconds=5, forbidden=(str(data),))
    archive = toy_archive(TOY_PIPELINE, TOY_MANIFEST, realtime=REALTIME)
    w = SandboxedWorker(
        "toy_1_0_0", archive, {"scale": 2.0}, str(tmp_path_factory.mktemp("work")), None, config, realtime=True
    )
    assert w.load_error is None, w.load_error
    w.data_dir = data  # type: ignore[attr-defined]
    yield w
    os.environ.pop("FEATUREBUS_S3_SECRET_KEY", None)
    w.close()


def test_realtime_py_answers_with_the_deployments_parameters_as_defaults(worker: SandboxedWorker) -> None:
    answer = worker.infer({"text": "hello"}, {})
    assert answer["embedding"] == [5.0, 2.0]
    assert worker.infer({"text": "hello"}, {"scale": 3.0})["embedding"] == [5.0, 3.0]
    assert worker.embed(["hey", "hello"]) == [{"vec": [3.0, 2.0]}, {"vec": [5.0, 2.0]}]  # queries: "embedding"


def test_realtime_py_runs_unprivileged_without_credentials(worker: SandboxedWorker) -> None:
    answer = worker.infer({"text": "x"}, {})
    assert answer["uid"] == 65534 and answer["pid"] != os.getpid()
    assert SECRET not in answer["env"] and "FEATUREBUS_" not in answer["env"]


def test_a_refused_read_fails_the_request_and_the_service_lives_on(worker: SandboxedWorker) -> None:
    with pytest.raises(PluginError) as caught:
        worker.infer({"read": str(worker.data_dir / "admin-api-key")}, {})  # type: ignore[attr-defined]
    assert caught.value.reason is ReasonCode.SANDBOX_VIOLATION and SECRET not in caught.value.message
    assert worker.infer({"text": "ok"}, {})["embedding"] == [2.0, 2.0]


def test_a_plugin_without_realtime_py_does_not_load_for_real_time(tmp_path: Path) -> None:
    w = SandboxedWorker("toy_1_0_0", toy_archive(), None, str(tmp_path), None, SandboxConfig(), realtime=True)
    try:
        with pytest.raises(PluginError) as caught:
            w.embed(["q"])
        assert caught.value.reason is ReasonCode.PLUGIN_LOAD_FAILED and "no realtime.py" in caught.value.message
    finally:
        w.close()
