"""Blue-green rollouts on a fake Serve: the new deployment takes over only once healthy, else rolls back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from inference_twins import InProcessActors, frame, toy_archive

from featurebus.common.events import DeploymentChanged, DeployRequested, FeatureSpec, PluginRef, ReasonCode
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.inference.deploying import Deployer
from featurebus.inference.pools import WarmPools
from featurebus.inference.processing import ArchiveCache
from featurebus.inference.rollout import BackendState, DeploymentMissing, DeploymentRecords, Realtime
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
        self.started: list[str] = []
        self.start_polls = 2

    async def start(self, name: str, plugin: PluginRef, archive: bytes) -> None:
        self.started.append(name)
        self.starting[name] = self.start_polls

    def restart(self) -> None:
        """What a restart of inference (and its Ray) does: every deployment is gone."""
        self.running.clear()
        self.starting.clear()

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


class Archives:
    def __init__(self) -> None:
        self.missing = False

    async def get(self, plugin: PluginRef) -> bytes:
        if self.missing:
            raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, f"the archive of {plugin.plugin_id} is missing")
        return b"zip"


def realtime_on(serve: Any, store: MemoryObjectStore | None = None, **options: Any) -> Realtime:
    """Realtime over ``serve``, recording in ``store`` (the object store a restarted process finds again)."""
    return Realtime(serve, DeploymentRecords(store or MemoryObjectStore()), Archives(), **{"poll_s": 0, **options})


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

    await realtime.deploy(req, report)
    return reports


async def test_a_first_deployment_reports_progress_then_deployed() -> None:
    realtime = realtime_on(FakeServe())
    reports = await deploy(realtime, request("d1"))
    assert [r.status for r in reports] == ["IN_PROGRESS", "IN_PROGRESS", "DEPLOYED"]
    assert (reports[1].replicas_ready, reports[1].replicas_desired) == (0, 1)
    assert (reports[-1].replicas_ready, reports[-1].replaced) == (1, None)
    assert await realtime.embed("d1", "q", 1) == {"vec": [1.0, 2.0, 3.0]}


async def test_the_old_deployment_serves_until_the_new_one_is_healthy_then_is_retired() -> None:
    serve = FakeServe()
    realtime = realtime_on(serve, drain_s=0.05)
    await deploy(realtime, request("v1"))
    serve.behaviour["v2"] = {"vec": [9.0, 9.0, 9.0]}
    reports = await deploy(realtime, request("v2", replaces="v1"))
    assert reports[-1].status == "DEPLOYED" and reports[-1].replaced == "v1"
    assert await realtime.embed("v1", "q", 1) == {"vec": [1.0, 2.0, 3.0]}  # still answering while callers switch
    await asyncio.sleep(0.2)
    assert serve.deleted == ["v1"] and await realtime.embed("v2", "q", 1) == {"vec": [9.0, 9.0, 9.0]}


async def test_a_new_deployment_with_wrong_dimensions_rolls_back() -> None:
    serve = FakeServe()
    realtime = realtime_on(serve, drain_s=0)
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
    reports = await deploy(realtime_on(serve), request("d"))
    assert reports[-1].status == "FAILED"
    assert reports[-1].error == "the plugin did not load: importing realtime.py failed: No module named 'x'"
    assert serve.deleted == ["d"]


async def test_a_deployment_that_cannot_start_fails_with_serves_reason() -> None:
    serve = FakeServe()
    serve.fail_start["d"] = "replica constructor failed"
    reports = await deploy(realtime_on(serve), request("d"))
    assert reports[-1].status == "FAILED" and reports[-1].error == "replica constructor failed"


async def test_replicas_that_never_get_placed_time_out_with_a_hint() -> None:
    serve = FakeServe()
    serve.start_polls = 10**9
    reports = await deploy(realtime_on(serve, poll_s=0.01, start_timeout_s=0.05), request("d"))
    assert reports[-1].status == "FAILED" and "not ready within" in (reports[-1].error or "")
    assert "CPU, memory or GPU" in (reports[-1].error or "") and serve.deleted == ["d"]


async def test_undeploy_stops_the_deployment() -> None:
    serve = FakeServe()
    realtime = realtime_on(serve)
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
    realtime = Realtime(Refusing(), DeploymentRecords(store), ArchiveCache(store, tmp_path), poll_s=0)
    deployer = Deployer(realtime, WarmPools(InProcessActors(str(tmp_path)), 60))
    reports: list[DeploymentChanged] = []

    async def report(changed: DeploymentChanged) -> None:
        reports.append(changed)

    await deployer.apply(request("d").model_copy(update={"plugin": plugin}), report)
    assert [r.status for r in reports] == ["IN_PROGRESS", "FAILED"]
    assert "could not be started: ValueError: Specifying 'max_concurrency'" in (reports[-1].error or "")


async def test_deployments_a_restart_stopped_are_restored_at_startup_and_stopped_ones_are_not() -> None:
    serve, store = FakeServe(), MemoryObjectStore()
    first = realtime_on(serve, store, drain_s=0)
    await deploy(first, request("v1"))
    serve.behaviour["v2"] = {"vec": [9.0, 9.0, 9.0]}
    await deploy(first, request("v2", replaces="v1"))
    await deploy(first, request("other"))
    await first.undeploy(request("other").model_copy(update={"action": "undeploy"}), _ignore)
    serve.restart()
    serve.started.clear()
    await realtime_on(serve, store).restore_all()
    assert serve.started == ["v2"]  # not v1 (replaced) nor other (undeployed)
    assert await realtime_on(serve, store).embed("v2", "q", 1) == {"vec": [9.0, 9.0, 9.0]}


async def test_a_query_for_a_deployment_that_should_run_waits_for_its_restore() -> None:
    serve, store = FakeServe(), MemoryObjectStore()
    await deploy(realtime_on(serve, store), request("d"))
    serve.restart()
    serve.started.clear()
    reports: list[DeploymentChanged] = []
    restarted = realtime_on(serve, store, report=_into(reports))
    answers = await asyncio.gather(*(restarted.embed("d", f"q{i}", 1) for i in range(3)))
    assert answers == [{"vec": [1.0, 2.0, 3.0]}] * 3 and serve.started == ["d"]  # one restore for all three
    assert [(r.deployment, r.status) for r in reports] == [
        ("d", "IN_PROGRESS"),
        ("d", "IN_PROGRESS"),
        ("d", "DEPLOYED"),
    ]


async def test_a_query_for_a_deployment_that_should_not_run_is_deployment_missing() -> None:
    serve = FakeServe()
    realtime = realtime_on(serve)
    await deploy(realtime, request("d"))
    await realtime.undeploy(request("d").model_copy(update={"action": "undeploy"}), _ignore)
    with pytest.raises(DeploymentMissing):
        await realtime.embed("d", "q", 1)
    assert serve.started == ["d"]  # not started again


async def test_a_restore_that_fails_fails_its_queries_loudly_and_is_retried_later() -> None:
    serve, store = FakeServe(), MemoryObjectStore()
    await deploy(realtime_on(serve, store), request("d"))
    serve.restart()
    now = [0.0]
    reports: list[DeploymentChanged] = []
    restarted = realtime_on(serve, store, restore_retry_s=30, clock=lambda: now[0], report=_into(reports))
    serve.fail_start["d"] = "replica constructor failed"
    for _ in range(2):  # the second query gets the remembered failure: no second start
        with pytest.raises(PluginError) as failed:
            await restarted.embed("d", "q", 1)
        assert failed.value.reason is ReasonCode.PLUGIN_LOAD_FAILED
        assert "d stopped" in failed.value.message and "replica constructor failed" in failed.value.message
    assert serve.started == ["d", "d"]  # the deploy, then one restore
    assert [r.status for r in reports] == ["IN_PROGRESS", "FAILED"]  # the status says why, once
    assert "replica constructor failed" in (reports[-1].error or "")
    del serve.fail_start["d"]
    now[0] = 31.0
    assert await restarted.embed("d", "q", 1) == {"vec": [1.0, 2.0, 3.0]}
    assert reports[-1].status == "DEPLOYED"


async def _ignore(changed: DeploymentChanged) -> None:
    return None


def _into(reports: list[DeploymentChanged]) -> Any:
    async def report(changed: DeploymentChanged) -> None:
        reports.append(changed)

    return report


async def test_a_batch_only_deploys_warm_starts_one_loaded_actor_which_the_first_frame_uses(tmp_path: Any) -> None:
    archive = toy_archive()
    store = MemoryObjectStore()
    uri = await store.put_bytes("plugins/toy.zip", archive)
    plugin = PLUGIN.model_copy(update={"archive_uri": uri, "archive_sha256": sha256_hex(archive)})
    actors = InProcessActors(str(tmp_path / "work"))
    pools = WarmPools(actors, 60)
    deployer = Deployer(Realtime(FakeServe(), DeploymentRecords(store), ArchiveCache(store, tmp_path), poll_s=0), pools)
    warm = DeployRequested(org_id="o", namespace_id="ns", action="warm", plugin_id=plugin.plugin_id, plugin=plugin)

    await deployer.apply(warm, _ignore)
    assert len(actors.spawned) == 1 and actors.spawned[0].load_error is None  # loaded before any frame
    await deployer.apply(warm, _ignore)  # warm already: nothing more starts
    assert len(actors.spawned) == 1

    in_namespace = plugin.model_copy(update={"namespace_id": "ns"})
    output = await pools.process(in_namespace, lambda: archive, frame(["a text"]), timeout=30)
    assert output.rows_embedded == 1 and len(actors.spawned) == 1 and actors.spawned[0].frames == 1
