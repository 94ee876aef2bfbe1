"""The handlers without Ray or Kafka servers: frames in, vector sets and reconciled counts out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from inference_twins import TOY_MANIFEST, TOY_PIPELINE, InProcessActors, frame, toy_archive

from featurebus.common.events import (
    BatchReady,
    ComputeProfile,
    FeatureSpec,
    PluginRef,
    ReasonCode,
    VectorsProduced,
)
from featurebus.common.frames import from_parquet
from featurebus.common.objectstore import sha256_hex
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import EMBED_PATH, EmbedRequest, EmbedResponse, QueryText
from featurebus.inference.config import InferenceSettings
from featurebus.inference.main import InferenceService, build
from featurebus.inference.plugin_worker import WorkerOutput
from featurebus.inference.pools import ActorLost, ArchiveLoader, WarmPools
from featurebus.inference.processing import ArchiveCache, EmbedFailed, Inference
from featurebus.runtime import PluginError

PREFIX = "inf."
TOKEN = "inference-test-token"
BROKEN = TOY_PIPELINE.replace("import PipelineDefinition", "import Nope")


async def plugin_ref(store: MemoryObjectStore, archive: bytes, **update: Any) -> PluginRef:
    uri = await store.put_bytes(f"plugins/ns/toy_1_0_0/{sha256_hex(archive)}.zip", archive)
    ref = PluginRef(
        plugin_id="toy_1_0_0",
        name="toy",
        version="1.0.0",
        archive_uri=uri,
        archive_sha256=sha256_hex(archive),
        features=[FeatureSpec(feature_name="vec", embedding_dim=2)],
    )
    return ref.model_copy(update=update)


async def batch_ready(
    store: MemoryObjectStore, plugin: PluginRef, texts: list[str], frame_id: str = "frm_1"
) -> BatchReady:
    data = frame(texts)
    uri = await store.put_bytes(f"frames/b1/{frame_id}.parquet", data)
    return BatchReady(
        org_id="o",
        namespace_id="n",
        bucket_id="bkt",
        batch_id="b1",
        frame_id=frame_id,
        frame_index=0,
        collection_id="col",
        plugin=plugin,
        frame_uri=uri,
        frame_sha256=sha256_hex(data),
        row_count=len(texts),
    )


@pytest.fixture
def actors(tmp_path: Path) -> InProcessActors:
    return InProcessActors(str(tmp_path / "work"))


@pytest.fixture
def service(tmp_path: Path, actors: InProcessActors) -> InferenceService:
    settings = InferenceSettings(topic_prefix=PREFIX, data_dir=tmp_path, internal_token=TOKEN)
    pools = WarmPools(actors, idle_seconds=600)
    service = build(settings, store=MemoryObjectStore(), pools=pools)  # type: ignore[arg-type]
    service.bus.publishes("batch.ready")  # the tests stand in for its producer
    return service


async def run_frames(service: InferenceService, *events: BatchReady) -> list[VectorsProduced]:
    produced: list[VectorsProduced] = []

    @service.bus.broker.subscriber(PREFIX + "vectors.produced")
    async def capture(event: VectorsProduced) -> None:
        produced.append(event)

    async with TestKafkaBroker(service.bus.broker):
        for event in events:
            await service.bus.publish(event)
    return produced


async def test_batch_ready_becomes_a_vector_set_and_vectors_produced(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    plugin = await plugin_ref(store, toy_archive())
    [event] = await run_frames(service, await batch_ready(store, plugin, ["a", "bbb"]))
    assert (event.rows_in, event.rows_embedded, event.failures) == (2, 2, [])
    assert (event.batch_id, event.frame_id, event.plugin_id, event.features) == (
        "b1",
        "frm_1",
        "toy_1_0_0",
        plugin.features,
    )
    assert event.vectors_uri == "s3://featurebus/vectors/b1/frm_1.parquet"
    vectors = from_parquet(await store.get_bytes(event.vectors_uri, event.vectors_sha256))
    assert [list(v) for v in vectors["vec"]] == [[1.0, 1.0], [3.0, 1.0]]
    assert list(vectors.columns) == ["document_id", "object_id", "blob_id", "vec", "payload"]


async def test_frames_of_one_plugin_version_share_one_warm_worker(
    service: InferenceService, actors: InProcessActors, tmp_path: Path
) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    # One actor at most: frames that arrive together must queue on it, not start a second one.
    plugin = await plugin_ref(store, toy_archive(), compute_profile=ComputeProfile(max_concurrency=1))
    events = [await batch_ready(store, plugin, ["a"], frame_id=f"frm_{i}") for i in range(3)]
    produced = await run_frames(service, *events)
    assert [e.rows_embedded for e in produced] == [1, 1, 1]
    [worker] = actors.spawned
    assert worker.stats()["model_loads"] == 1 and worker.stats()["frames"] == 3
    # The archive was fetched once and is kept on local disk under its checksum.
    assert (tmp_path / "plugins" / "archives" / f"{plugin.archive_sha256}.zip").read_bytes() == toy_archive()


async def test_a_local_archive_copy_that_changed_is_fetched_again_and_never_used(tmp_path: Path) -> None:
    store = MemoryObjectStore()
    plugin = await plugin_ref(store, toy_archive())
    cache = ArchiveCache(store, tmp_path)
    assert await cache.get(plugin) == toy_archive()
    local = tmp_path / f"{plugin.archive_sha256}.zip"
    local.write_bytes(b"tampered")  # changed after it was checked: checked again, fetched again
    assert await cache.get(plugin) == toy_archive() and local.read_bytes() == toy_archive()
    read = await cache.loader(plugin)
    local.write_bytes(b"tampered again")  # between the check and the actor's start
    with pytest.raises(PluginError, match="is damaged or gone") as refused:
        read()
    assert refused.value.reason is ReasonCode.PLUGIN_LOAD_FAILED
    assert await cache.get(plugin) == toy_archive()  # the next use fetches it again


async def test_a_plugin_that_cannot_load_still_reports_every_row(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    plugin = await plugin_ref(store, toy_archive(BROKEN))
    [event] = await run_frames(service, await batch_ready(store, plugin, ["a", "b", "c"]))
    assert (event.rows_in, event.rows_embedded, event.vectors_uri) == (3, 0, None)
    assert [f.reason for f in event.failures] == [ReasonCode.PLUGIN_LOAD_FAILED] * 3
    assert "Nope" in event.failures[0].message


async def test_a_missing_archive_fails_every_row_instead_of_blocking_the_batch(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    plugin = await plugin_ref(store, toy_archive())
    del store.objects[plugin.archive_uri]
    [event] = await run_frames(service, await batch_ready(store, plugin, ["a", "b"]))
    assert (event.rows_in, event.rows_embedded) == (2, 0)
    assert {f.reason for f in event.failures} == {ReasonCode.PLUGIN_LOAD_FAILED}
    assert "missing from the object store" in event.failures[0].message


async def test_a_gpu_plugin_without_gpus_fails_loudly_instead_of_waiting(
    service: InferenceService, actors: InProcessActors
) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    actors.unavailable = "plugin toy_1_0_0 asks for a GPU (compute_profile.resource_type='gpu') but ..."
    plugin = await plugin_ref(store, toy_archive(), compute_profile=ComputeProfile(resource_type="gpu"))
    [event] = await run_frames(service, await batch_ready(store, plugin, ["a"]))
    assert event.rows_embedded == 0 and "resource_type='gpu'" in event.failures[0].message
    assert actors.spawned == []


async def test_a_tampered_frame_is_dead_lettered(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    dead: list[dict[str, str]] = []

    @service.bus.broker.subscriber(PREFIX + "batch.ready.dlq")
    async def capture(message: KafkaMessage) -> None:
        dead.append(message.headers)

    plugin = await plugin_ref(store, toy_archive())
    event = await batch_ready(store, plugin, ["a"])
    store.objects[event.frame_uri] = frame(["tampered"])
    async with TestKafkaBroker(service.bus.broker):
        await service.bus.publish(event)
    assert dead and "ChecksumMismatch" in dead[0]["featurebus-error"]


class DyingPools:
    """Every call finds its actor dead."""

    def __init__(self) -> None:
        self.calls = 0

    async def process(self, plugin: PluginRef, archive: ArchiveLoader, frame: bytes, timeout: float) -> WorkerOutput:
        self.calls += 1
        raise ActorLost("worker died")


async def test_a_frame_whose_actor_keeps_dying_is_retried_then_failed(tmp_path: Path) -> None:
    store = MemoryObjectStore()
    pools = DyingPools()
    inference = Inference(store, pools, ArchiveCache(store, tmp_path), 60, max_actor_deaths=3)  # type: ignore[arg-type]
    event = await batch_ready(store, await plugin_ref(store, toy_archive()), ["a", "b"])
    for _ in range(2):
        with pytest.raises(ActorLost):  # a TransientError: the Bus retries the message
            await inference.run_frame(event)
    produced = await inference.run_frame(event)
    assert pools.calls == 3 and produced.rows_in == 2
    assert [f.reason for f in produced.failures] == [ReasonCode.PLUGIN_EXCEPTION] * 2
    assert "died 3 times" in produced.failures[0].message


# ------------------------------------------------------------------------------------ queries


async def embed(service: InferenceService, request: EmbedRequest, token: str | None = TOKEN) -> httpx.Response:
    """POST the request to the internal embed API, as the registry does (no socket)."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    transport = httpx.ASGITransport(app=service.api)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference", headers=headers) as http:
        return await http.post(EMBED_PATH, content=request.model_dump_json())


def request(request_id: str, *queries: QueryText) -> EmbedRequest:
    return EmbedRequest(request_id=request_id, namespace_id="n", queries=list(queries))


async def test_query_is_embedded_by_the_plugins_batch_steps(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    plugin = await plugin_ref(store, toy_archive())
    four, two = (QueryText(plugin=plugin, feature_name="vec", text=t) for t in ("four", "ab"))
    answer = await embed(service, request("r1", four, two))
    assert answer.status_code == 200, answer.text
    assert EmbedResponse.model_validate_json(answer.content).vectors == [[4.0, 1.0], [2.0, 1.0]]  # in order


async def test_queries_run_in_the_namespace_of_the_request(service: InferenceService, actors: InProcessActors) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    plugin = await plugin_ref(store, toy_archive(), namespace_id="someone-else")
    query = QueryText(plugin=plugin, feature_name="vec", text="q")
    for namespace in ("ns_a", "ns_b", "ns_a"):
        done = await service.inference.embed_queries(
            EmbedRequest(request_id="r", namespace_id=namespace, queries=[query])
        )
        assert done.vectors == [[1.0, 1.0]]
    assert len(actors.spawned) == 2  # one worker per namespace, whatever the ref says


async def test_a_feature_name_the_plugin_lacks_falls_back_to_embedding(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    # The guide's realtime contract: "embedding" is the primary vector when no name matches.
    archive = toy_archive(
        TOY_PIPELINE.replace('batch["vec"]', 'batch["embedding"]'), TOY_MANIFEST.replace('"vec"', '"embedding"')
    )
    plugin = await plugin_ref(store, archive, features=[FeatureSpec(feature_name="embedding", embedding_dim=2)])
    done = await service.inference.embed_queries(request("r1", QueryText(plugin=plugin, feature_name="x", text="abc")))
    assert done.vectors == [[3.0, 1.0]]


async def test_a_query_that_cannot_be_embedded_is_a_422_with_the_plugins_message(service: InferenceService) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    good = await plugin_ref(store, toy_archive())
    broken = await plugin_ref(store, toy_archive(BROKEN), plugin_id="bad_1_0_0")
    unknown = QueryText(plugin=good, feature_name="nope", text="q")
    failing = QueryText(plugin=broken, feature_name="vec", text="q")
    first = await embed(service, request("r2", unknown))
    second = await embed(service, request("r3", QueryText(plugin=good, feature_name="vec", text="q"), failing))
    assert first.status_code == second.status_code == 422
    assert "toy_1_0_0 produced no vector 'nope' (it produced ['vec'])" in first.json()["detail"]
    assert "bad_1_0_0 could not embed the query" in second.json()["detail"] and "Nope" in second.json()["detail"]


class FlakyPools:
    """The first ``deaths`` embed calls find their actor dead; then answer."""

    def __init__(self, deaths: int) -> None:
        self.deaths, self.calls = deaths, 0

    async def embed(
        self, plugin: PluginRef, archive: ArchiveLoader, text: str, timeout: float
    ) -> dict[str, list[float]]:
        self.calls += 1
        if self.calls <= self.deaths:
            raise ActorLost("worker died")
        return {"vec": [1.0]}


@pytest.mark.parametrize(("deaths", "calls", "fails"), [(1, 2, False), (2, 2, True)])
async def test_a_query_whose_actor_died_is_tried_once_more(
    tmp_path: Path, deaths: int, calls: int, fails: bool
) -> None:
    store = MemoryObjectStore()
    pools = FlakyPools(deaths)
    inference = Inference(store, pools, ArchiveCache(store, tmp_path), 60, max_actor_deaths=3)  # type: ignore[arg-type]
    query = QueryText(plugin=await plugin_ref(store, toy_archive()), feature_name="vec", text="q")
    if fails:
        with pytest.raises(EmbedFailed, match="toy_1_0_0's worker process died 2 times while embedding the query"):
            await inference.embed_queries(request("r", query))
    else:
        assert (await inference.embed_queries(request("r", query))).vectors == [[1.0]]
    assert pools.calls == calls


@pytest.mark.parametrize("token", [None, "wrong", TOKEN + "x"])
async def test_the_embed_api_refuses_a_request_without_the_service_token(
    service: InferenceService, actors: InProcessActors, token: str | None
) -> None:
    store: MemoryObjectStore = service.store  # type: ignore[assignment]
    query = QueryText(plugin=await plugin_ref(store, toy_archive()), feature_name="vec", text="q")
    answer = await embed(service, request("r", query), token=token)
    assert answer.status_code == 401 and "needs Authorization: Bearer" in answer.json()["detail"]
    assert actors.spawned == []  # no plugin ran
