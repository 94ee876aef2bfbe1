"""Models of the registry reach a node's Hugging Face cache (cluster) or its namespace directory,
once, checked, size-bounded; the shipper reads them from the object store once."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from featurebus.common.events import PluginRef
from featurebus.common.model_store import ModelFile, ModelManifest, blob_key, manifest_key
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import ModelFetchResponse
from featurebus.inference.model_cache import ModelShipment, NodeModels, install_models
from featurebus.inference.model_shipping import ModelShipper
from featurebus.runtime import PluginError


def manifest(
    name: str, files: dict[str, bytes], namespace_id: str | None = None, revision: str = "r1"
) -> ModelManifest:
    return ModelManifest(
        name=name,
        revision=revision,
        namespace_id=namespace_id,
        files=[ModelFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size_bytes=len(b)) for p, b in files.items()],
    )


def shipment(m: ModelManifest, files: dict[str, bytes]) -> ModelShipment:
    return ModelShipment(m, {hashlib.sha256(b).hexdigest(): b for b in files.values()})


class Fetches:
    """A node's fetch that counts what it pulled."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, handle: object) -> bytes:
        self.count += 1
        assert isinstance(handle, bytes)
        return handle


FILES = {"config.json": b'{"hidden_size": 4}', "1_Pooling/config.json": b"{}", "model.safetensors": b"W" * 100}


def test_a_cluster_model_is_laid_out_as_the_hub_cache_and_installed_once(tmp_path: Path) -> None:
    node = NodeModels(tmp_path / "hf", tmp_path / "ns", 10**6)
    m = manifest("acme/tiny", FILES)
    fetch = Fetches()
    snapshot = node.install(shipment(m, FILES), fetch)
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny"
    assert snapshot == repo / "snapshots" / "r1"
    assert (repo / "refs" / "main").read_text() == "r1"
    assert (snapshot / "1_Pooling" / "config.json").read_bytes() == b"{}"
    assert (snapshot / "model.safetensors").is_symlink()  # into blobs/, as the hub's downloads are
    assert fetch.count == 3
    node.install(shipment(m, FILES), fetch)  # a second worker on the node
    assert fetch.count == 3


def test_huggingface_hub_resolves_the_installed_model_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import snapshot_download

    node = NodeModels(tmp_path / "hf", tmp_path / "ns", 10**6)
    node.install(shipment(manifest("acme/tiny", FILES), FILES), Fetches())
    found = snapshot_download("acme/tiny", cache_dir=str(tmp_path / "hf" / "hub"), local_files_only=True)
    assert Path(found, "config.json").read_bytes() == FILES["config.json"]


def test_a_damaged_local_file_is_fetched_again_and_a_damaged_shipment_refused(tmp_path: Path) -> None:
    node = NodeModels(tmp_path / "hf", tmp_path / "ns", 10**6)
    m = manifest("acme/tiny", FILES)
    snapshot = node.install(shipment(m, FILES), Fetches())
    blob = (snapshot / "model.safetensors").resolve()
    os.chmod(blob, 0o644)
    blob.write_bytes(b"X" * 100)  # same size, other bytes
    (snapshot.parents[1] / ".featurebus-model.json").unlink()  # as after a crash mid-install
    fetch = Fetches()
    node.install(shipment(m, FILES), fetch)
    assert blob.read_bytes() == b"W" * 100 and fetch.count == 1
    other = NodeModels(tmp_path / "hf2", tmp_path / "ns2", 10**6)
    bad = ModelShipment(m, {f.sha256: b"not it" for f in m.files})
    assert install_models(other, [bad], Fetches(), "ns_a") == tmp_path / "ns2" / "ns_a"
    assert not (tmp_path / "hf2" / "hub" / "models--acme--tiny" / ".featurebus-model.json").exists()


def test_a_new_revision_replaces_the_old_and_its_unused_blobs(tmp_path: Path) -> None:
    node = NodeModels(tmp_path / "hf", tmp_path / "ns", 10**6)
    node.install(shipment(manifest("acme/tiny", FILES), FILES), Fetches())
    changed = {**FILES, "model.safetensors": b"V" * 100}
    snapshot = node.install(shipment(manifest("acme/tiny", changed, revision="r2"), changed), Fetches())
    repo = snapshot.parents[1]
    assert (repo / "refs" / "main").read_text() == "r2"
    assert (snapshot / "model.safetensors").read_bytes() == b"V" * 100
    assert len(list((repo / "blobs").iterdir())) == 3


def test_namespace_models_go_to_their_namespace_only(tmp_path: Path) -> None:
    node = NodeModels(tmp_path / "hf", tmp_path / "ns", 10**6)
    weights = {"model.safetensors": b"S" * 10}
    own = install_models(node, [shipment(manifest("bert_1_0_0", weights, "ns_a"), weights)], Fetches(), "ns_a")
    assert own == tmp_path / "ns" / "ns_a"
    assert (own / "bert_1_0_0" / "files" / "model.safetensors").read_bytes() == b"S" * 10
    assert not any((tmp_path / "hf").rglob("model.safetensors"))
    assert install_models(node, [], Fetches(), "ns_b") == tmp_path / "ns" / "ns_b"
    assert not any((tmp_path / "ns" / "ns_b").iterdir())


def test_the_least_recently_used_models_go_when_the_cache_is_full(tmp_path: Path) -> None:
    node = NodeModels(tmp_path / "hf", tmp_path / "ns", max_bytes=250)
    big = {f"m{i}": {"model.safetensors": bytes([i]) * 100} for i in range(3)}
    for i, (name, files) in enumerate(big.items()):
        node.install(shipment(manifest(f"acme/{name}", files), files), Fetches())
        if i == 0:
            os.utime(tmp_path / "hf" / "hub" / "models--acme--m0" / ".featurebus-model.json", (1, 1))
    present = sorted(p.name for p in (tmp_path / "hf" / "hub").iterdir() if p.is_dir())
    assert present == ["models--acme--m1", "models--acme--m2"]


def plugin(models: list[str], namespace_models: list[str] | None = None, namespace_id: str = "ns_a") -> PluginRef:
    return PluginRef(
        plugin_id="p_1_0_0",
        name="p",
        version="1.0.0",
        archive_uri="s3://featurebus/a.zip",
        archive_sha256="0" * 64,
        models=models,
        namespace_models=namespace_models or [],
        namespace_id=namespace_id,
    )


async def publish(store: MemoryObjectStore, m: ModelManifest, files: dict[str, bytes]) -> None:
    for f, data in zip(m.files, files.values(), strict=True):
        await store.put_bytes(blob_key(m.namespace_id, f.sha256), data)
    await store.put_bytes(manifest_key(m.namespace_id, m.name), m.model_dump_json().encode())


def test_the_shipper_reads_each_blob_once_and_ships_only_models_the_registry_holds() -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        m = manifest("acme/tiny", FILES)
        own = manifest("bert_1_0_0", {"w.safetensors": b"S"}, "ns_a")
        await publish(store, m, FILES)
        await publish(store, own, {"w.safetensors": b"S"})
        puts: list[bytes] = []
        clock = [0.0]
        shipper = ModelShipper(store, put=lambda b: puts.append(b) or b, refresh_s=30, clock=lambda: clock[0])
        wanted = plugin(["acme/tiny", "acme/not-imported"], ["bert_1_0_0"])
        await shipper.prepare(wanted)
        await shipper.prepare(wanted)
        names = [s.manifest.name for s in shipper.shipments(wanted)]
        assert names == ["acme/tiny", "bert_1_0_0"] and len(puts) == 4
        # Another namespace's plugin naming the same namespace model gets nothing.
        other = plugin([], ["bert_1_0_0"], namespace_id="ns_b")
        await shipper.prepare(other)
        assert shipper.shipments(other) == []
        # A model imported later is found once the manifests are looked at again.
        late = manifest("acme/not-imported", {"a.onnx": b"\x08\x07"})
        await publish(store, late, {"a.onnx": b"\x08\x07"})
        await shipper.prepare(wanted)
        assert len(shipper.shipments(wanted)) == 2
        clock[0] = 31.0
        await shipper.prepare(wanted)
        assert len(shipper.shipments(wanted)) == 3 and len(puts) == 5

    asyncio.run(scenario())


def test_a_blob_damaged_in_the_object_store_fails_the_load_naming_the_model() -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        m = manifest("acme/tiny", FILES)
        await publish(store, m, FILES)
        await store.put_bytes(blob_key(None, m.files[2].sha256), b"tampered")
        shipper = ModelShipper(store, put=lambda b: b)
        with pytest.raises(PluginError, match=r"acme/tiny: its file model.safetensors is damaged"):
            await shipper.prepare(plugin(["acme/tiny"]))

    asyncio.run(scenario())


class Registry:
    """The registry's fetch answers, in order; it publishes the model when it answers ready."""

    def __init__(self, store: MemoryObjectStore, answers: list[str], error: str | None = None) -> None:
        self.store, self.answers, self.error, self.asked = store, answers, error, 0

    async def fetch(self, name: str) -> ModelFetchResponse:
        self.asked += 1
        status = self.answers.pop(0) if self.answers else "ready"
        if status == "ready":
            await publish(self.store, manifest(name, FILES), FILES)
        return ModelFetchResponse(status=status, error=self.error)  # type: ignore[arg-type]


def test_a_model_the_registry_fetches_from_the_hub_is_waited_for_and_shipped() -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        registry = Registry(store, ["fetching", "fetching", "ready"])
        shipper = ModelShipper(store, put=lambda b: b, registry=registry, poll_s=0)  # type: ignore[arg-type]
        wanted = plugin(["hubowner/tiny"])
        await shipper.prepare(wanted)
        assert registry.asked == 3 and [s.manifest.name for s in shipper.shipments(wanted)] == ["hubowner/tiny"]
        await shipper.prepare(wanted)
        assert registry.asked == 3  # held now: not asked again

    asyncio.run(scenario())


def test_a_model_the_registry_cannot_fetch_is_left_out_and_not_asked_for_at_every_frame() -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        clock = [0.0]
        registry = Registry(store, ["unavailable", "unavailable"], "FEATUREBUS_MODEL_HUB is off")
        shipper = ModelShipper(store, put=lambda b: b, registry=registry, refresh_s=30, clock=lambda: clock[0])  # type: ignore[arg-type]
        wanted = plugin(["hubowner/tiny"])
        await shipper.prepare(wanted)
        clock[0] = 10.0
        await shipper.prepare(wanted)
        assert shipper.shipments(wanted) == [] and registry.asked == 1
        clock[0] = 31.0
        await shipper.prepare(wanted)
        assert registry.asked == 2

    asyncio.run(scenario())


def test_a_download_that_outlasts_the_wait_leaves_the_model_out() -> None:
    async def scenario() -> None:
        store = MemoryObjectStore()
        clock = [0.0]
        registry = Registry(store, ["fetching"] * 100)

        async def tick(_: float) -> None:
            clock[0] += 100.0

        shipper = ModelShipper(store, put=lambda b: b, registry=registry, fetch_wait_s=250, clock=lambda: clock[0])  # type: ignore[arg-type]
        original, asyncio.sleep = asyncio.sleep, tick  # type: ignore[assignment]
        try:
            await shipper.prepare(plugin(["hubowner/big"]))
        finally:
            asyncio.sleep = original  # type: ignore[assignment]
        assert registry.asked == 4 and shipper.shipments(plugin(["hubowner/big"])) == []

    asyncio.run(scenario())
