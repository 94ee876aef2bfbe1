"""Cluster models fetched from the model hub on first use: once for the installation, only what a
worker may load, stored as an import stores it, and a refusal said and not retried at every ask."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from registry_twins import twins

from featurebus.common.model_store import ModelManifest, blob_key, manifest_key
from featurebus.registry.usecases import hub_models
from featurebus.registry.usecases.hub_models import fetch_model

REPO = "hubowner/tiny"
SAFETENSORS = len(b'{"a":1}').to_bytes(8, "little") + b'{"a":1}' + b"\0" * 8


class FakeHub:
    """A download function over files laid out as a hub snapshot; counts downloads, can hold one."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.downloads = 0
        self.release = threading.Event()
        self.release.set()

    def __call__(self, repo_id: str, into: Path) -> tuple[Path, str]:
        self.downloads += 1
        self.release.wait(10)
        wanted = hub_models._wanted(repo_id, list(self.files))  # what the real client asks for
        snapshot = into / "snapshots" / "c0ffee"
        for name in wanted:
            (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
            (snapshot / name).write_bytes(self.files[name])
        return snapshot, "c0ffee"


async def test_without_the_hub_a_missing_model_is_unavailable_saying_why() -> None:
    t = twins()
    answer = await fetch_model(t.c, REPO, None)
    assert answer.status == "unavailable" and "FEATUREBUS_MODEL_HUB" in (answer.error or "")
    assert await t.tables.models.find(name=REPO) == []


async def test_the_first_ask_fetches_once_for_everyone_and_stores_it_as_an_import_would() -> None:
    t = twins()
    hub = FakeHub(
        {"config.json": b"{}", "model.safetensors": SAFETENSORS, "pytorch_model.bin": b"pickle", "README.md": b"#"}
    )
    hub.release.clear()  # the download runs while others ask
    first = await fetch_model(t.c, REPO, hub)
    others = await asyncio.gather(*(fetch_model(t.c, REPO, hub) for _ in range(3)))
    assert first.status == "fetching" and {a.status for a in others} == {"fetching"}
    hub.release.set()
    await t.c.settle()
    assert hub.downloads == 1

    assert (await fetch_model(t.c, REPO, hub)).status == "ready"
    [model] = await t.tables.models.find(name=REPO)
    assert model.status == "ready" and model.namespace_id is None and model.revision == "c0ffee"
    assert model.source and model.source.startswith("hub:")
    manifest = ModelManifest.model_validate(json.loads(await t.store.get_bytes(t.store.uri(manifest_key(None, REPO)))))
    # the pickled weights beside the safetensors and the README are left out
    assert sorted(f.path for f in manifest.files) == ["config.json", "model.safetensors"]
    for f in manifest.files:
        assert await t.store.size(blob_key(None, f.sha256)) == f.size_bytes
    assert hub.downloads == 1


async def test_asks_at_the_same_moment_start_one_download() -> None:
    t = twins()
    hub = FakeHub({"config.json": b"{}", "model.safetensors": SAFETENSORS})
    answers = await asyncio.gather(*(fetch_model(t.c, REPO, hub) for _ in range(4)))
    await t.c.settle()
    assert {a.status for a in answers} == {"fetching"} and hub.downloads == 1
    assert [m.status for m in await t.tables.models.find(name=REPO)] == ["ready"]


async def test_a_repo_with_only_pickled_weights_fails_saying_so_and_is_not_retried_at_once() -> None:
    t = twins(model_hub_retry_s=300)
    hub = FakeHub({"config.json": b"{}", "pytorch_model.bin": b"pickle"})
    assert (await fetch_model(t.c, REPO, hub)).status == "fetching"
    await t.c.settle()
    failed = await fetch_model(t.c, REPO, hub)
    assert failed.status == "failed" and "only pickled weights" in (failed.error or "")
    assert "featurebus models import" in (failed.error or "")
    assert hub.downloads == 1  # asked again within FEATUREBUS_MODEL_HUB_RETRY_S: not downloaded again
    [model] = await t.tables.models.find(name=REPO)
    assert model.status == "failed" and await t.store.size(manifest_key(None, REPO)) is None


async def test_a_failed_fetch_is_tried_again_after_the_retry_time() -> None:
    t = twins(model_hub_retry_s=0)
    broken = FakeHub({"pytorch_model.bin": b"pickle"})
    await fetch_model(t.c, REPO, broken)
    await t.c.settle()
    fixed = FakeHub({"config.json": b"{}", "model.safetensors": SAFETENSORS})
    assert (await fetch_model(t.c, REPO, fixed)).status == "fetching"
    await t.c.settle()
    assert (await fetch_model(t.c, REPO, fixed)).status == "ready"
    assert [m.status for m in await t.tables.models.find(name=REPO)] == ["ready"]  # the failed attempt is gone


async def test_a_hub_error_fails_the_model_with_the_error() -> None:
    t = twins()

    def unreachable(repo_id: str, into: Path) -> tuple[Path, str]:
        raise OSError("Name or service not known")

    await fetch_model(t.c, REPO, unreachable)
    await t.c.settle()
    answer = await fetch_model(t.c, REPO, unreachable)
    assert answer.status == "failed" and answer.error == "OSError: Name or service not known"


@pytest.mark.integration
async def test_huggingface_hubs_own_client_fetches_even_where_the_workers_offline_setting_leaked_in(
    model_hub: Any, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as a process started beside the workers inherits it
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    t = twins(model_hub_endpoint=model_hub.url)
    download = hub_models.hub_download(model_hub.url, None)
    assert (await fetch_model(t.c, "hubowner/tiny-bert", download)).status == "fetching"
    await t.c.settle()
    [model] = await t.tables.models.find(name="hubowner/tiny-bert")
    assert model.status == "ready", model.error
    assert sorted(f.path for f in model.files) == sorted(p.name for p in tiny_bert.iterdir() if p.is_file())
    missing = await fetch_model(t.c, "nobody/nothing", download)
    await t.c.settle()
    failed = await fetch_model(t.c, "nobody/nothing", download)
    assert missing.status == "fetching" and failed.status == "failed" and "no such repo" in (failed.error or "")


async def test_a_model_deleted_while_it_is_fetched_leaves_no_manifest() -> None:
    t = twins()
    hub = FakeHub({"config.json": b"{}", "model.safetensors": SAFETENSORS})
    hub.release.clear()
    await fetch_model(t.c, REPO, hub)
    [fetching] = await t.tables.models.find(name=REPO)
    await t.tables.models.delete(fetching.id)  # featurebus models rm, while it downloads
    hub.release.set()
    await t.c.settle()
    assert await t.store.size(manifest_key(None, REPO)) is None and await t.tables.models.find(name=REPO) == []
