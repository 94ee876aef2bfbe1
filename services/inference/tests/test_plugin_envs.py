"""Plugin environments: installed once per node and pin set, exactly the pinned wheels, first on the
plugin's path inside its sandbox, and a failed install fails the plugin's rows naming it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from inference_twins import frame, toy_archive

from featurebus.common.events import ReasonCode
from featurebus.common.frames import from_parquet
from featurebus.inference.plugin_envs import EnvironmentFailed, PluginEnvironments, node_environment
from featurebus.inference.ray_actors import PluginActor
from featurebus.inference.sandbox.supervisor import SandboxConfig, SandboxedWorker

pytestmark = [pytest.mark.slow]

PINS = ["fbdemo==1.2.0", "fbwidth==0.1.0"]

MANIFEST = """
feature_extractor_name = "envs"
version = "1.0.0"
dependencies = ["fbdemo"]
features = [{"feature_type": "embedding", "feature_name": "vec", "embedding_dim": 2, "distance_metric": "cosine"}]
"""
PIPELINE = """
import fbdemo
from engine.plugins.extractors.pipeline import PipelineDefinition, StepDefinition, build_pipeline_steps


class Shout:
    def __init__(self, config=None):
        pass

    def __call__(self, batch):
        batch["vec"] = [[1.0, float(len(fbdemo.shout(t)))] for t in batch["data"]]
        batch["shouted"] = [fbdemo.shout(t) + " " + fbdemo.VERSION for t in batch["data"]]
        return batch


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Shout)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="envs", version="1.0.0", steps=steps))}
"""


@pytest.fixture
def environments(tmp_path: Path, plugin_wheelhouse) -> PluginEnvironments:  # type: ignore[no-untyped-def]
    return PluginEnvironments(tmp_path / "envs", index_url="", find_links=(str(plugin_wheelhouse.directory),))


def test_an_environment_holds_exactly_its_pins_and_is_installed_once(
    environments: PluginEnvironments, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = environments.install(PINS)
    assert (site / "fbdemo" / "__init__.py").read_text().count('VERSION = "1.2.0"') == 1
    installed = sorted(p.name for p in site.glob("*.dist-info"))
    assert installed == ["fbdemo-1.2.0.dist-info", "fbwidth-0.1.0.dist-info"]

    def no_pip(*args: object) -> None:
        raise AssertionError("installed again")

    monkeypatch.setattr(PluginEnvironments, "_pip", no_pip)
    assert environments.install(list(reversed(PINS))) == site  # the same set, in any order
    assert environments.path(["fbdemo==1.2.0"]) != site  # another set, another environment


def test_workers_starting_together_install_it_once(
    environments: PluginEnvironments, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    pip = PluginEnvironments._pip

    def counted(self: PluginEnvironments, pins: list[str], into: Path) -> None:
        calls.append(1)
        pip(self, pins, into)

    monkeypatch.setattr(PluginEnvironments, "_pip", counted)
    sites: list[Path] = []
    threads = [threading.Thread(target=lambda: sites.append(environments.install(PINS))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(sites)) == 1 and len(sites) == 4


def test_a_version_the_index_lacks_fails_naming_it_and_leaves_nothing_behind(environments: PluginEnvironments) -> None:
    with pytest.raises(EnvironmentFailed, match=r"fbdemo==9\.9\.9"):
        environments.install(["fbdemo==9.9.9"])
    assert [p.name for p in environments.root.iterdir() if not p.name.endswith(".lock")] == []
    failed = node_environment(environments, ["fbdemo==9.9.9"], "envs_1_0_0")
    assert not isinstance(failed, Path) and failed is not None
    assert failed.reason is ReasonCode.ENVIRONMENT_FAILED and "fbdemo==9.9.9" in failed.message and failed.hint


def test_a_plugin_without_dependencies_gets_no_environment(environments: PluginEnvironments) -> None:
    assert node_environment(environments, [], "envs_1_0_0") is None
    assert not environments.root.exists()


@pytest.mark.integration
def test_the_sandboxed_plugin_imports_its_environment_and_others_do_not_see_it(
    environments: PluginEnvironments, tmp_path: Path
) -> None:
    site = environments.install(PINS)
    archive = toy_archive(PIPELINE, MANIFEST)
    own = SandboxedWorker(
        "envs_1_0_0",
        archive,
        None,
        str(tmp_path / "a"),
        None,
        SandboxConfig(frame_cpu_seconds=60, site_dirs=(str(site),)),
    )
    other = SandboxedWorker("envs_1_0_0", archive, None, str(tmp_path / "b"), None, SandboxConfig(frame_cpu_seconds=60))
    try:
        assert own.load_error is None, own.load_error
        output = own.process(frame(["hey"]))
        assert output.failures == [], [f.message for f in output.failures]
        assert output.vectors_parquet is not None
        assert "HEY!!! 1.2.0" in from_parquet(output.vectors_parquet)["payload"][0]
        # the same plugin without the environment: its import fails, loudly
        assert other.load_error is not None and "fbdemo" in other.load_error.message
    finally:
        own.close()
        other.close()


def test_an_actor_whose_environment_fails_runs_no_plugin_code_and_fails_every_row(
    environments: PluginEnvironments, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(SandboxedWorker, "__init__", lambda *a, **k: started.append("sandbox"))
    actor = PluginActor(
        "envs_1_0_0", toy_archive(PIPELINE, MANIFEST), None, str(tmp_path), None, SandboxConfig(),
        environments=environments, environment=("fbdemo==9.9.9",),
    )  # fmt: skip
    output = actor.process(frame(["a", "b"]))
    assert started == [] and output.load_failed
    assert [f.reason for f in output.failures] == [ReasonCode.ENVIRONMENT_FAILED] * 2
    assert "fbdemo==9.9.9" in output.failures[0].message
