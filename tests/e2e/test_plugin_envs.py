"""Plugin dependencies on the real stack: a package of the operator's installable list runs in the
plugin's own environment (installed on the worker's node from the operator's wheels), the other
plugins of the platform do not see it, and a dependency the platform cannot pin fails the scan."""

from __future__ import annotations

import io
import uuid
import zipfile
from typing import Any

import pytest

from ._client import Api
from ._retrieve import search_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MANIFEST = """
feature_extractor_name = "NAME"
version = "1.0.0"
dependencies = DEPENDENCIES
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2, "distance_metric": "cosine"}]
"""
PIPELINE = """
import fbdemo
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps

class Shout:
    def __init__(self, config=None):
        pass

    def __call__(self, batch):
        batch["vec"] = [[1.0, float(len(t))] for t in batch["data"]]
        batch["shouted"] = [fbdemo.shout(t) + " " + fbdemo.VERSION for t in batch["data"]]
        return batch

def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Shout)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="NAME", version="1.0.0", steps=steps))}
"""
TEXTS = ["hi", "penguins"]


def plugin_zip(name: str, dependencies: list[str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{name}/manifest.py", MANIFEST.replace("NAME", name).replace("DEPENDENCIES", repr(dependencies)))
        zf.writestr(f"{name}/pipeline.py", PIPELINE.replace("NAME", name))
    return buffer.getvalue()


def test_a_pinned_dependency_runs_in_the_plugins_own_environment(api: Api, platform: Any) -> None:
    ns = api.namespace(f"envs-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "shouter", "1.0.0", plugin_zip("shouter", ["fbdemo>=1"]))
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status
    plugin = api.call("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}")
    assert plugin["manifest"]["environment"] == ["fbdemo==1.2.0", "fbwidth==0.1.0"]  # what it needs, pinned
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    # The deploy warms the plugin's first actor: its environment is installed before any frame.
    warmed = f"warm {plugin_id} in {ns}: an actor loaded it"
    api.wait(lambda: warmed in platform.log("inference"), bool, timeout=120)
    collection, done, failed = api.run_collection(ns, "shouter", TEXTS)
    assert done["status"] == "COMPLETED" and done["rows_written"] == len(TEXTS), (done, failed)
    results = search_everything(api, ns, collection, "mixpeek://shouter@1.0.0/vec", "hi")
    # fbdemo 1.2.0 (not the 2.0.0 also in the wheel directory) with fbwidth, inside the sandbox
    assert sorted(r["shouted"] for r in results) == ["HI!! 1.2.0", "PENGUINS!!!!!!!! 1.2.0"]


def test_a_plugin_importing_a_listed_package_it_does_not_depend_on_fails_the_scan(api: Api) -> None:
    ns = api.namespace(f"envs-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "undeclared", "1.0.0", plugin_zip("undeclared", []))
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "failed", status
    refused = [v for v in status["scan"]["violations"] if v["code"] == "SEC001"]
    assert refused and "fbdemo" in refused[0]["message"] and 'list "fbdemo"' in refused[0]["hint"], refused


@pytest.mark.parametrize(
    ("dependency", "code", "fix"),
    [
        ("fbdemo==2.0.0", "DEP003", "fbdemo==1.2.0"),  # in the wheel directory, but not the pinned version
        ("leftpad-ml", "DEP002", "plugin-packages.toml"),  # on no list: the file the operator adds it to
    ],
)
def test_a_dependency_the_platform_does_not_pin_fails_the_scan_naming_it(
    api: Api, dependency: str, code: str, fix: str
) -> None:
    ns = api.namespace(f"envs-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "unpinned", "1.0.0", plugin_zip("unpinned", [dependency]))
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "failed", status
    [problem] = [v for v in status["scan"]["violations"] if v["code"].startswith("DEP")]
    assert problem["code"] == code and dependency in problem["message"] and fix in problem["hint"], problem
