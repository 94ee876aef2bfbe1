"""Blue-green rollouts on a fake Serve: the new deployment takes over only once healthy, else rolls back."""

from __future__ import annotations

import asyncio
from typing import Any

from inference_twins import InProcessActors

from featurebus.common.events import DeploymentChanged, DeployRequested, FeatureSpec, PluginRef, ReasonCode
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.inference.deploying import Deployer
from featurebus.inference.pools import WarmPools
from featurebus.inference.processing import ArchiveCache
from featurebus.inference.rollout import BackendState, DeploymentMissing, Realtime
from featurebus.runtime import PluginError

PLUGIN = PluginRef(
    plugin_id="toy_1_0_0",
    name="toy",
    version="1.0.0",
    archive_uri="s3://b/a.zip",
    archive_sha256="0" * 64,
    features=[FeatureSpec(feature_name="vec", embedding_dim=3)],
)


class FakeServe:
    """Deployments that start after ``start_polls`` state() calls, answering with ``answers[name]``."""

    def __init__(self) -> None:
        self.running: dict[str, Any] = {}  # name -> its answer to embed (a vector dict or an exception)
        self.starting: dict[str, int] = {}
        self.behaviour: dict[str, Any] = {}
        self.fail_start: dict[str, str] = {}
        self.deleted: list[str] = []
        self.start_polls = 2

    async def start(self, name: str, plugin: PluginRef, archive: bytes) -> None:
        self.starting[name] = self.start_polls

    async def state(self, name: str) -> BackendState:
        if name in self.fail_start:
            return BackendState("failed", 0, 1, self.fail_start[name])
        if name in self.running:
            return BackendState("running", 1, 1)
        if name not in self.starting:
            return BackendState("missing")
        self.starting[name] -= 1
        if self.starting[name] <= 0:
            del self.starting[name]
            self.running[name] = self.behaviour.get(name, {"vec": [1.0, 2.0, 3.0]})
            return BackendState("running", 1, 1)
        return BackendState("starting", 0, 1)

    async def call(self, name: str, method: str, *args: Any, timeout: float) -> Any:
        if name not in self.running:
            raise DeploymentMissing(name)
        answer = self.running[name]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def delete(self, name: str) -> None:
        self.deleted.append(name)
        self.running.pop(name, None)
        self.starting.pop(name, None)


def request(name: str, replaces: str | None = None) -> DeployRequested:
    return DeployRequested(
        org_id="o",
        namespace_id="ns",
        action="deploy",
        plugin_id=PLUGIN.plugin_id,
        deployment=name,
        plugin=PLUGIN,
        replaces=replaces,
    )


async def deploy(realtime: Realtime, req: DeployRequested) -> list[DeploymentChanged]:
    reports: list[DeploymentChanged] = []

    async def report(changed: DeploymentChanged) -> None:
        reports.append(changed)

    await realtime.deploy(req, b"zip", report)
    return reports


async def test_a_first_deployment_reports_progress_then_deployed() -> None:
    realtime = Realtime(FakeServe(), poll_s=0)
    reports = await deploy(realtime, request("d1"))
    assert [r.status for r in reports] == ["IN_PROGRESS", "IN_PROGRESS", "DEPLOYED"]
    assert (reports[1].replicas_ready, reports[1].replicas_desired) == (0, 1)
    assert (reports[-1].replicas_ready, reports[-1].replaced) == (1, None)
    assert await realtime.embed("d1", "q", 1) == {"vec": [1.0, 2.0, 3.0]}


async def test_the_old_deployment_serves_until_the_new_one_is_healthy_then_is_retired() -> None:
    serve = FakeServe()
    realtime = Realtime(serve, poll_s=0, drain_s=0.05)
    await deploy(realtime, request("v1"))
    serve.behaviour["v2"] = {"vec": [9.0, 9.0, 9.0]}
    reports = await deploy(realtime, request("v2", replaces="v1"))
    assert reports[-1].status == "DEPLOYED" and reports[-1].replaced == "v1"
    assert await realtime.embed("v1", "q", 1) == {"vec": [1.0, 2.0, 3.0]}  # still answering while callers switch
    await asyncio.sleep(0.2)
    assert serve.deleted == ["v1"] and await realtime.embed("v2", "q", 1) == {"vec": [9.0, 9.0, 9.0]}


async def test_a_new_deployment_with_wrong_dimensions_rolls_back() -> None:
    serve = FakeServe()
    realtime = Realtime(serve, poll_s=0, drain_s=0)
    await deploy(realtime, request("v1"))
    serve.behaviour["v3"] = {"vec": [1.0, 2.0]}
    reports = await deploy(realtime, request("v3", replaces="v1"))
    assert reports[-1].status == "FAILED"
    assert "health check failed" in (reports[-1].error or "") and "3" in (reports[-1].error or "")
    assert serve.deleted == ["v3"] and "v1" in serve.running  # traffic stays on v1


async def test_a_plugin_that_does_not_load_fails_with_its_own_message() -> None:
    serve = FakeServe()
    serve.behaviour["d"] = PluginError(
        ReasonCode.PLUGIN_LOAD_FAILED, "importing realtime.py failed: No module named 'x'"
    )
    reports = await deploy(Realtime(serve, poll_s=0), request("d"))
    assert reports[-1].status == "FAILED"
    assert reports[-1].error == "the plugin did not load: importing realtime.py failed: No module named 'x'"
    assert serve.deleted == ["d"]


async def test_a_deployment_that_cannot_start_fails_with_serves_reason() -> None:
    serve = FakeServe()
    serve.fail_start["d"] = "replica constructor failed"
    reports = await deploy(Realtime(serve, poll_s=0), request("d"))
    assert reports[-1].status == "FAILED" and reports[-1].error == "replica constructor failed"


async def test_replicas_that_never_get_placed_time_out_with_a_hint() -> None:
    serve = FakeServe()
    serve.start_polls = 10**9
    reports = await deploy(Realtime(serve, poll_s=0.01, start_timeout_s=0.05), request("d"))
    assert reports[-1].status == "FAILED" and "not ready within" in (reports[-1].error or "")
    assert "CPU, memory or GPU" in (reports[-1].error or "") and serve.deleted == ["d"]


async def test_undeploy_stops_the_deployment() -> None:
    serve = FakeServe()
    realtime = Realtime(serve, poll_s=0)
    await deploy(realtime, request("d"))
    reports: list[DeploymentChanged] = []

    async def report(changed: DeploymentChanged) -> None:
        reports.append(changed)

    await realtime.undeploy(request("d").model_copy(update={"action": "undeploy"}), report)
    assert serve.deleted == ["d"] and reports[-1].status == "NOT_DEPLOYED"


async def test_a_deployment_serve_refuses_ends_failed_not_in_progress(tmp_path: Any) -> None:
    class Refusing(FakeServe):
        async def start(self, name: str, plugin: PluginRef, archive: bytes) -> None:
            raise ValueError("Specifying 'max_concurrency' in ray_actor_options is not allowed")

    archive = b"zip"
    store = MemoryObjectStore()
    uri = await store.put_bytes("plugins/a.zip", archive)
    plugin = PLUGIN.model_copy(update={"archive_uri": uri, "archive_sha256": sha256_hex(archive)})
    deployer = Deployer(
        Realtime(Refusing(), poll_s=0), WarmPools(InProcessActors(str(tmp_path)), 60), ArchiveCache(store, tmp_path)
    )  # type: ignore[arg-type]
    reports: list[DeploymentChanged] = []

    async def report(changed: DeploymentChanged) -> None:
        reports.append(changed)

    await deployer.apply(request("d").model_copy(update={"plugin": plugin}), report)
    assert [r.status for r in reports] == ["IN_PROGRESS", "FAILED"]
    assert "could not be started: ValueError: Specifying 'max_concurrency'" in (reports[-1].error or "")
