"""Warm-pool bookkeeping (no Ray): who takes a call, when pools grow, shrink and replace actors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from featurebus.common.events import ComputeProfile, FeatureSpec, PluginRef, ReasonCode, RowFailure
from featurebus.inference.plugin_worker import WorkerOutput
from featurebus.inference.pools import ActorLost, ResourcesUnavailable, WarmPools
from featurebus.runtime import PluginError


def archive() -> bytes:
    """The plugin's archive, as the pools read it to start an actor."""
    return b"zip"


class FakeActor:
    def __init__(self, number: int, load_fails: bool) -> None:
        self.number = number
        self.load_fails = load_fails
        self.calls: list[str] = []
        self.queries: list[list[str]] = []  # the texts of each embed call
        self.dead = False


class FakeBackend:
    """Actors whose calls wait at a gate (so tests can hold a frame "running") and can die."""

    def __init__(self) -> None:
        self.actors: list[FakeActor] = []
        self.killed: list[FakeActor] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.query_gate = asyncio.Event()  # queries stay "running" while it is clear
        self.query_gate.set()
        self.load_fails = False
        self.model_missing = False  # the plugin loads its model lazily, and it is not on the node
        self.capacity = 100  # how many live actors the cluster has room for

    def check(self, plugin: PluginRef) -> None:
        pass

    def has_room(self, plugin: PluginRef) -> bool:
        return len(self.actors) - len(self.killed) < self.capacity

    def spawn(self, plugin: PluginRef, archive: bytes) -> FakeActor:
        self.actors.append(FakeActor(len(self.actors), self.load_fails))
        return self.actors[-1]

    async def call(self, actor: FakeActor, method: str, *args: Any) -> Any:
        actor.calls.append(method)
        if method == "process":
            await self.gate.wait()
        if actor.dead:
            raise ActorLost("gone")
        if actor.load_fails:
            if method == "embed":
                raise PluginError(ReasonCode.PLUGIN_LOAD_FAILED, "ImportError: Nope")
            failure = RowFailure(document_id="d", object_id="o", reason=ReasonCode.PLUGIN_LOAD_FAILED, message="Nope")
            return WorkerOutput(None, [failure], 1, 0, load_failed=True)
        if self.model_missing and actor.number == 0:
            failure = RowFailure(
                document_id="d", object_id="o", reason=ReasonCode.MODEL_NOT_AVAILABLE, message="acme/m"
            )
            return WorkerOutput(None, [failure], 1, 0)
        if method == "embed":
            actor.queries.append(list(args[0]))
            await self.query_gate.wait()
            return [
                {"vec": [float(len(text))]} if text != "fails" else PluginError(ReasonCode.PLUGIN_EXCEPTION, "no")
                for text in args[0]
            ]
        return WorkerOutput(b"parquet", [], 1, 1)

    def kill(self, actor: FakeActor) -> None:
        self.killed.append(actor)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plugin(max_concurrency: int = 2, **update: Any) -> PluginRef:
    ref = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri="s3://featurebus/plugins/toy.zip",
        archive_sha256="ab" * 32,
        compute_profile=ComputeProfile(max_concurrency=max_concurrency),
        features=[FeatureSpec(feature_name="vec", embedding_dim=1)],
    )
    return ref.model_copy(update=update)


async def test_a_pool_starts_lazily_and_reuses_its_idle_actor() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    assert pools.size(plugin()) == 0
    for _ in range(3):
        await pools.process(plugin(), archive, b"frame", timeout=5)
    assert len(backend.actors) == 1 and backend.actors[0].calls == ["process"] * 3


async def test_the_archive_is_read_only_to_start_an_actor() -> None:
    reads: list[int] = []

    def counted() -> bytes:
        reads.append(1)
        return b"zip"

    pools = WarmPools(FakeBackend(), idle_seconds=60)
    for _ in range(3):
        await pools.process(plugin(), counted, b"frame", timeout=5)
        await pools.embed(plugin(), counted, "q", timeout=5)
    assert len(reads) == 1  # a warm pool's frames and queries never read it


async def test_busy_pools_grow_to_max_concurrency_and_no_further() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    backend.gate.clear()  # frames stay "running"
    frames = [asyncio.create_task(pools.process(plugin(2), archive, b"f", timeout=5)) for _ in range(3)]
    await asyncio.sleep(0.01)  # let the calls reach their actors
    assert len(backend.actors) == 2
    # The third frame waits for a free actor instead of doubling up on one; queries still pass.
    assert [a.calls for a in backend.actors] == [["process"], ["process"]]
    assert await pools.embed(plugin(2), archive, "q", timeout=5) == {"vec": [1.0]}
    backend.gate.set()
    assert all(o.rows_embedded == 1 for o in await asyncio.gather(*frames))
    assert sorted(a.calls.count("process") for a in backend.actors) == [1, 2]


async def test_a_query_uses_the_warm_actor_even_while_it_runs_a_frame() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    await pools.process(plugin(4), archive, b"f", timeout=5)  # the pool is warm
    backend.gate.clear()
    frame = asyncio.create_task(pools.process(plugin(4), archive, b"f", timeout=5))
    await asyncio.sleep(0.01)  # let the calls reach their actors
    assert await pools.embed(plugin(4), archive, "q", timeout=5) == {"vec": [1.0]}
    assert len(backend.actors) == 1  # no second model load just for a query
    backend.gate.set()
    await frame


async def test_queries_arriving_while_one_runs_go_together_in_one_call_each_with_its_own_answer() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    await pools.process(plugin(), archive, b"f", timeout=5)  # one warm actor
    backend.query_gate.clear()
    first = asyncio.create_task(pools.embed(plugin(), archive, "a", timeout=5))
    await asyncio.sleep(0.01)
    texts = ["b" * n for n in range(2, 9)] + ["fails"] + ["c" * n for n in range(9, 12)]
    later = [asyncio.create_task(pools.embed(plugin(), archive, t, timeout=5)) for t in texts]
    await asyncio.sleep(0.01)
    assert backend.actors[0].queries == [["a"]]  # a lone query left at once; the others wait for it
    backend.query_gate.set()
    answers = await asyncio.gather(first, *later, return_exceptions=True)
    assert backend.actors[0].queries == [["a"], texts]  # one model call for all that waited
    for text, answer in zip(["a", *texts], answers, strict=True):
        if text == "fails":  # the plugin's failure of one query is that query's alone
            assert isinstance(answer, PluginError) and answer.message == "no"
        else:
            assert answer == {"vec": [float(len(text))]}


async def test_a_call_carries_at_most_the_plugins_batch_size_of_queries() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    small = plugin(compute_profile=ComputeProfile(batch_size=4))
    await pools.process(small, archive, b"f", timeout=5)
    backend.query_gate.clear()
    calls = [asyncio.create_task(pools.embed(small, archive, "q" * n, timeout=5)) for n in range(1, 11)]
    await asyncio.sleep(0.01)
    backend.query_gate.set()
    assert await asyncio.gather(*calls) == [{"vec": [float(n)]} for n in range(1, 11)]
    assert [len(q) for q in backend.actors[0].queries] == [1, 4, 4, 1]


async def test_a_dead_actor_is_replaced_and_the_call_retried_by_the_bus() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    await pools.process(plugin(), archive, b"f", timeout=5)
    backend.actors[0].dead = True
    with pytest.raises(ActorLost):  # a TransientError
        await pools.process(plugin(), archive, b"f", timeout=5)
    assert backend.killed == [backend.actors[0]] and pools.size(plugin()) == 0
    assert (await pools.process(plugin(), archive, b"f", timeout=5)).rows_embedded == 1
    assert len(backend.actors) == 2


async def test_a_hung_actor_is_killed_on_timeout() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    backend.gate.clear()
    with pytest.raises(TimeoutError):
        await pools.process(plugin(), archive, b"f", timeout=0.01)
    assert backend.killed == backend.actors and pools.size(plugin()) == 0


async def test_a_load_failure_is_cached_briefly_then_the_plugin_is_loaded_again() -> None:
    backend = FakeBackend()
    backend.load_fails = True
    clock = Clock()
    pools = WarmPools(backend, idle_seconds=600, load_failure_retry_s=60, clock=clock)
    for _ in range(3):
        assert (await pools.process(plugin(), archive, b"f", timeout=5)).load_failed
    with pytest.raises(PluginError):
        await pools.embed(plugin(), archive, "q", timeout=5)
    assert len(backend.actors) == 1  # one load attempt answered all four calls
    clock.now += 61
    backend.load_fails = False  # say, the operator installed the missing dependency
    assert (await pools.process(plugin(), archive, b"f", timeout=5)).rows_embedded == 1
    assert len(backend.actors) == 2 and backend.killed == [backend.actors[0]]


async def test_a_worker_missing_a_model_is_replaced_so_that_a_model_imported_since_reaches_it() -> None:
    backend = FakeBackend()
    backend.model_missing = True  # only the first worker: it started before the model was imported
    clock = Clock()
    pools = WarmPools(backend, idle_seconds=600, load_failure_retry_s=60, clock=clock)
    for _ in range(2):
        output = await pools.process(plugin(), archive, b"f", timeout=5)
        assert [f.reason for f in output.failures] == [ReasonCode.MODEL_NOT_AVAILABLE]
    assert len(backend.actors) == 1
    clock.now += 61
    assert (await pools.process(plugin(), archive, b"f", timeout=5)).rows_embedded == 1
    assert len(backend.actors) == 2 and backend.killed == [backend.actors[0]]


async def test_idle_pools_are_shut_down_and_busy_ones_kept() -> None:
    backend = FakeBackend()
    clock = Clock()
    pools = WarmPools(backend, idle_seconds=60, clock=clock)
    other = plugin(archive_sha256="cd" * 32)
    await pools.process(plugin(), archive, b"f", timeout=5)
    backend.gate.clear()
    running = asyncio.create_task(pools.process(other, archive, b"f", timeout=5))
    await asyncio.sleep(0.01)  # let the calls reach their actors
    clock.now += 61
    await pools.reap_idle()
    assert pools.size(plugin()) == 0 and pools.size(other) == 1
    assert backend.killed == [backend.actors[0]]
    backend.gate.set()
    await running


async def test_versions_and_parameters_get_pools_of_their_own() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=60)
    refs = [plugin(), plugin(archive_sha256="cd" * 32), plugin(parameters={"model_size": "large"})]
    for ref in refs:
        await pools.process(ref, archive, b"f", timeout=5)
    assert len(backend.actors) == 3 and all(pools.size(r) == 1 for r in refs)


async def test_an_unplaceable_plugin_starts_no_actor() -> None:
    backend = FakeBackend()

    def refuse(plugin: PluginRef) -> None:
        raise ResourcesUnavailable("no GPU")

    backend.check = refuse  # type: ignore[method-assign]
    pools = WarmPools(backend, idle_seconds=60)
    with pytest.raises(ResourcesUnavailable):
        await pools.process(plugin(), archive, b"f", timeout=5)
    assert backend.actors == []


async def test_a_full_cluster_shuts_the_least_recently_used_idle_pool_for_a_new_plugin() -> None:
    backend, clock = FakeBackend(), Clock()
    pools = WarmPools(backend, idle_seconds=600, clock=clock)
    old, recent, new = (plugin(1, archive_sha256=c * 64) for c in "abc")
    await pools.process(old, archive, b"f", timeout=5)
    clock.now += 10
    await pools.process(recent, archive, b"f", timeout=5)
    backend.capacity = 2  # both idle pools hold the resources a new actor needs
    await pools.process(new, archive, b"f", timeout=5)
    assert backend.killed == [backend.actors[0]]  # the older idle pool went, long before idle_seconds
    assert (pools.size(old), pools.size(recent), pools.size(new)) == (0, 1, 1)


async def test_busy_pools_are_not_shut_down_to_make_room() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=600)
    busy, new = plugin(1, archive_sha256="a" * 64), plugin(1, archive_sha256="b" * 64)
    backend.gate.clear()
    running = asyncio.create_task(pools.process(busy, archive, b"f", timeout=5))
    await asyncio.sleep(0.01)
    backend.capacity = 1
    waiting = asyncio.create_task(pools.process(new, archive, b"f", timeout=5))
    await asyncio.sleep(0.01)
    assert backend.killed == [] and pools.size(new) == 1  # started; Ray runs it once resources free up
    backend.gate.set()
    await asyncio.gather(running, waiting)


async def test_a_busy_pool_that_cannot_grow_waits_for_its_own_actor() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=600)
    await pools.process(plugin(2), archive, b"f", timeout=5)  # one warm actor
    backend.capacity = 1  # the cluster is full and no other pool is idle
    backend.gate.clear()
    frames = [asyncio.create_task(pools.process(plugin(2), archive, b"f", timeout=5)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert len(backend.actors) == 1  # no second actor that Ray could not place
    backend.gate.set()
    await asyncio.gather(*frames)
    assert backend.actors[0].calls == ["process"] * 3


async def test_room_is_made_for_a_real_time_deployment_by_shutting_idle_pools() -> None:
    backend = FakeBackend()
    pools = WarmPools(backend, idle_seconds=600)
    idle, deployed = plugin(1, archive_sha256="a" * 64), plugin(1, archive_sha256="b" * 64)
    await pools.process(idle, archive, b"f", timeout=5)
    backend.capacity = 1  # the idle pool's actor holds the room the deployment's replicas need
    assert await pools.make_room(deployed) is True
    assert backend.killed == [backend.actors[0]] and pools.size(idle) == 0
