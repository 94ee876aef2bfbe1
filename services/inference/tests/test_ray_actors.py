"""The Ray adapter without a Ray cluster: what it asks Ray for (``ray.nodes`` and the actor class faked)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import ray
from inference_twins import toy_archive

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginRef
from featurebus.inference.model_cache import NodeModels
from featurebus.inference.pools import ResourcesUnavailable
from featurebus.inference.ray_actors import PluginActor, RayActors, SandboxSettings
from featurebus.inference.sandbox.supervisor import SandboxConfig

GIB = 2**30


def plugin(**profile: Any) -> PluginRef:
    return PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri="s3://featurebus/plugins/toy.zip",
        archive_sha256="ab" * 32,
        compute_profile=ComputeProfile(**profile),
        features=[FeatureSpec(feature_name="vec", embedding_dim=1)],
    )


def node(alive: bool = True, cpus: float = 1.0) -> dict[str, Any]:
    return {"Alive": alive, "Resources": {"CPU": cpus, "memory": 4.0 * GIB}}


def test_the_check_asks_whether_one_live_node_can_host_an_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two live 1-CPU nodes and a dead 8-CPU one: 1.5 CPUs per actor fit on no node that is up.
    monkeypatch.setattr(ray, "nodes", lambda: [node(), node(), node(alive=False, cpus=8.0)])
    with pytest.raises(ResourcesUnavailable, match="largest Ray node has 1"):
        RayActors(Path("/unused"), actor_num_cpus=1.5).check(plugin(actor_memory_gb=1))
    RayActors(Path("/unused"), actor_num_cpus=0.5).check(plugin(actor_memory_gb=1))


class FakeActorClass:
    def __init__(self) -> None:
        self.options_seen: dict[str, Any] = {}
        self.args: tuple[Any, ...] = ()

    def options(self, **options: Any) -> FakeActorClass:
        self.options_seen = options
        return self

    def remote(self, *args: Any) -> str:
        self.args = args
        return "handle"


def test_actors_are_spread_and_get_the_archive_and_the_paths_to_make(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: [node(cpus=4.0), node(cpus=8.0), node(alive=False, cpus=64.0)])
    layout = NodeModels(Path("/srv/fb/models"), Path("/srv/fb/models-namespaces"), 2**30)
    actors = RayActors(Path("/srv/fb/plugins/work"), actor_num_cpus=0.5, models=layout)
    fake = FakeActorClass()
    actors._worker_class = fake
    assert actors.spawn(plugin(max_concurrency=2), b"zip") == "handle"
    assert fake.options_seen["scheduling_strategy"] == "SPREAD" and fake.options_seen["num_cpus"] == 0.5
    # The largest live node's cores, shared by the pool's two actors.
    assert fake.options_seen["runtime_env"]["env_vars"]["OMP_NUM_THREADS"] == "4"
    assert fake.args[:5] == ("toy_1_0_0", b"zip", {}, "/srv/fb/plugins/work", layout)
    # Sandboxed by default, with the plugin's memory plus the address-space allowance.
    sandbox = fake.args[5]
    assert sandbox.memory_bytes == int((2.0 + 4.0) * 1024**3) and sandbox.egress is False
    without_models = RayActors(Path("/w"), actor_num_cpus=0.5, sandbox=SandboxSettings(enforce=False))
    without_models._worker_class = fake
    without_models.spawn(plugin(), b"zip")
    assert fake.args[4:6] == (None, None)


def test_only_api_plugins_get_egress_and_only_when_the_operator_allows_it() -> None:
    allowed = SandboxSettings(egress=True)
    api = plugin(resource_type="api")
    assert allowed.for_plugin(api).egress is True  # type: ignore[union-attr]
    assert allowed.for_plugin(plugin()).egress is False  # type: ignore[union-attr]
    assert SandboxSettings().for_plugin(api).egress is False  # type: ignore[union-attr]

    # a step of ResourceType.API in a "cpu" plugin is honoured as an API plugin's
    step = plugin()
    step.compute_profile.step_resource_types = ["cpu", "api"]
    assert allowed.for_plugin(step).egress is True  # type: ignore[union-attr]


def test_the_actors_stats_name_the_ray_node_it_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Context:
        def get_node_id(self) -> str:
            return "node-2"

    monkeypatch.setattr(ray, "get_runtime_context", Context)
    actor = PluginActor("toy_1_0_0", toy_archive(), None, str(tmp_path), None, SandboxConfig())
    stats = actor.stats()
    assert stats["node_id"] == "node-2" and stats["pid"] == os.getpid() and stats["model_loads"] == 1


def test_room_counts_the_actors_this_process_started_not_rays_lagging_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: [node(cpus=2.0)])
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 16.0 * GIB})
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": 2.0, "memory": 16.0 * GIB})  # never updated
    killed: list[Any] = []
    monkeypatch.setattr(ray, "kill", lambda actor, no_restart: killed.append(actor))
    actors = RayActors(Path("/w"), actor_num_cpus=0.5)

    class Handles:
        def options(self, **options: Any) -> Handles:
            return self

        def remote(self, *args: Any) -> object:
            return object()

    actors._worker_class = Handles()
    started = []
    while actors.has_room(plugin(actor_memory_gb=1)):
        started.append(actors.spawn(plugin(actor_memory_gb=1), b"zip"))
    assert len(started) == 4  # 4 x 0.5 CPU on a 2-CPU cluster, though Ray still says 2 CPUs are free
    actors.kill(started[0])
    assert actors.has_room(plugin(actor_memory_gb=1)) and killed == [started[0]]
    assert not actors.has_room(plugin(actor_memory_gb=15))  # memory is counted too
