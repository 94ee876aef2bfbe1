"""The Models API on the twins: create → PUT to presigned URLs → confirm → a manifest and blobs in
model_store's layout, which inference reads.

What a client sees: which files it must upload (content already stored is not asked for again),
refusals that name the field or the file and the fix, a model that stays pending until its bytes
are right, cluster writes only for org-admin keys, namespaces that never see each other's models,
and blobs kept for as long as any model of the scope lists them. The S3 calls involved are proven
alike on the twin and on S3 by ``libs/common/tests/test_objectstore_twin.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from registry_twins import ADMIN, MEMBER, Twins, limited_to, twins

from featurebus.common import ids
from featurebus.common.kafka import Bus
from featurebus.common.model_store import ModelManifest, blob_key, manifest_key, staging_key
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.registry.auth import bootstrap_admin_key
from featurebus.registry.config import RegistrySettings
from featurebus.registry.errors import Forbidden, Invalid, NotFound
from featurebus.registry.key_rules import Principal
from featurebus.registry.main import build_app
from featurebus.registry.model_checks import FileSpec
from featurebus.registry.records import Model, now
from featurebus.registry.tables import Tables
from featurebus.registry.usecases import models
from featurebus.registry.usecases.models import Upload

REPO = "acme/tiny-bert"


def safetensors(payload: bytes = b"\x00" * 16) -> bytes:
    header = b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    return len(header).to_bytes(8, "little") + header + payload


CONFIG = b'{"hidden_size": 4}'
WEIGHTS = safetensors()
TOKENIZER = b'{"vocab": ["a", "b"]}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def specs(files: dict[str, bytes]) -> list[FileSpec]:
    return [FileSpec(path, len(data), sha(data)) for path, data in files.items()]


async def create(
    t: Twins, files: dict[str, bytes], name: str = REPO, ns: str | None = None, who: Principal = ADMIN, **kw: Any
) -> tuple[Model, dict[str, Upload]]:
    made, uploads = await models.create_model(t.c, who, ns, name, specs(files), **kw)
    return made, {u.path: u for u in uploads}


async def imported(t: Twins, files: dict[str, bytes], name: str = REPO, ns: str | None = None, **kw: Any) -> Model:
    """Created, every asked-for file PUT, confirmed."""
    made, uploads = await create(t, files, name, ns, **kw)
    for path, upload in uploads.items():
        t.store.put_presigned(upload.presigned_url, files[path])
    return await models.confirm_model(t.c, ADMIN, ns, made.id)


async def stored_manifest(t: Twins, name: str = REPO, ns_id: str | None = None) -> ModelManifest | None:
    data = t.store.objects.get(t.store.uri(manifest_key(ns_id, name)))
    return None if data is None else ModelManifest.model_validate_json(data)


def blob(t: Twins, data: bytes, ns_id: str | None = None) -> bytes | None:
    return t.store.objects.get(t.store.uri(blob_key(ns_id, sha(data))))


def staged_keys(t: Twins) -> list[str]:
    return [k for k in t.store.objects if k.startswith(t.store.uri("models/staging/"))]


async def test_create_put_confirm_writes_the_blobs_then_the_manifest_of_a_ready_model() -> None:
    t = twins()
    files = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "tokenizer.json": TOKENIZER}
    made, uploads = await create(t, files, revision="main", source="hf://acme/tiny-bert")
    assert made.id.startswith("mdl_") and (made.status, made.namespace_id, made.revision) == ("pending", None, "main")
    assert sorted(uploads) == sorted(files)
    assert all(u.expires_at - now() > timedelta(minutes=59) for u in uploads.values())
    assert await stored_manifest(t) is None  # nothing is readable before the confirm
    for path, upload in uploads.items():
        t.store.put_presigned(upload.presigned_url, files[path])

    ready = await models.confirm_model(t.c, ADMIN, None, made.id)
    assert ready.status == "ready" and ready.ready_at is not None
    manifest = await stored_manifest(t)
    assert manifest is not None
    assert (manifest.name, manifest.revision, manifest.namespace_id) == (REPO, "main", None)
    assert [(f.path, f.size_bytes, f.sha256) for f in manifest.files] == [(p, len(d), sha(d)) for p, d in files.items()]
    assert all(blob(t, data) == data for data in files.values())
    assert staged_keys(t) == []  # the staged bytes are gone once stored
    assert await models.get_model(t.c, MEMBER, None, made.id) == ready
    # Confirming again changes nothing.
    assert await models.confirm_model(t.c, ADMIN, None, made.id) == ready


async def test_without_a_revision_the_files_name_one() -> None:
    t = twins()
    first = await imported(t, {"model.safetensors": WEIGHTS})
    other = await imported(t, {"model.safetensors": safetensors(b"\x01" * 16)}, name="acme/other")
    assert len(first.revision) == 40 and first.revision != other.revision


async def test_content_already_stored_in_the_scope_is_not_asked_for_again() -> None:
    t = twins()
    await imported(t, {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    mine = {"config.json": b'{"hidden_size": 8}', "model.safetensors": WEIGHTS, "copy.safetensors": WEIGHTS}
    made, uploads = await create(t, mine, name="acme/fine-tuned")
    assert list(uploads) == ["config.json"]  # the weights are stored already, under their sha256
    assert made.uploads == [0]
    t.store.put_presigned(uploads["config.json"].presigned_url, mine["config.json"])
    assert (await models.confirm_model(t.c, ADMIN, None, made.id)).status == "ready"
    manifest = await stored_manifest(t, "acme/fine-tuned")
    assert manifest is not None and [f.path for f in manifest.files] == list(mine)


async def test_one_content_listed_twice_in_a_model_is_uploaded_once() -> None:
    t = twins()
    made, uploads = await create(t, {"a.safetensors": WEIGHTS, "b.safetensors": WEIGHTS})
    assert list(uploads) == ["a.safetensors"]
    t.store.put_presigned(uploads["a.safetensors"].presigned_url, WEIGHTS)
    assert (await models.confirm_model(t.c, ADMIN, None, made.id)).status == "ready"


async def test_a_namespace_dedupes_only_against_its_own_blobs() -> None:
    t = twins()
    await t.namespace("a")
    await imported(t, {"model.safetensors": WEIGHTS})  # a cluster model
    _, uploads = await create(t, {"model.safetensors": WEIGHTS}, name="mine", ns="a")
    assert list(uploads) == ["model.safetensors"]


@pytest.mark.parametrize(
    ("put", "detail"),
    [
        (safetensors(b"\x07" * 16), f"its bytes do not match sha256 {sha(WEIGHTS)} (they hash to "),
        (WEIGHTS[:20], f"20 bytes were PUT but size_bytes said {len(WEIGHTS)}"),
        (None, "nothing was PUT to its presigned_url"),
    ],
    ids=["wrong sha256", "wrong size", "nothing put"],
)
async def test_bad_or_missing_bytes_are_refused_naming_the_file_until_the_right_ones_are_put(
    put: bytes | None, detail: str
) -> None:
    t = twins()
    files = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
    made, uploads = await create(t, files)
    t.store.put_presigned(uploads["config.json"].presigned_url, CONFIG)
    if put is not None:
        t.store.put_presigned(uploads["model.safetensors"].presigned_url, put)
    with pytest.raises(Invalid) as refused:
        await models.confirm_model(t.c, ADMIN, None, made.id)
    assert refused.value.detail.startswith("files[1] 'model.safetensors': ") and detail in refused.value.detail
    assert "config.json" not in refused.value.detail  # the good file is not blamed
    assert refused.value.hint and "PUT" in refused.value.hint and "presigned_url" in refused.value.hint
    still = await models.get_model(t.c, ADMIN, None, made.id)
    assert (still.status, still.ready_at) == ("pending", None)
    assert await stored_manifest(t) is None and blob(t, WEIGHTS) is None and blob(t, put or b"") is None

    t.store.put_presigned(uploads["model.safetensors"].presigned_url, WEIGHTS)
    assert (await models.confirm_model(t.c, ADMIN, None, made.id)).status == "ready"
    assert blob(t, WEIGHTS) == WEIGHTS and await stored_manifest(t) is not None


async def test_every_bad_file_is_named_in_one_refusal() -> None:
    t = twins()
    files = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "tokenizer.json": TOKENIZER}
    made, _ = await create(t, files)
    with pytest.raises(Invalid) as refused:
        await models.confirm_model(t.c, ADMIN, None, made.id)
    for i, path in enumerate(files):
        assert f"files[{i}] {path!r}: nothing was PUT" in refused.value.detail


async def test_weights_whose_bytes_are_not_their_format_are_refused() -> None:
    t = twins()
    fake = b"\x80\x02}q\x00(X\x06\x00\x00\x00weight" + b"\x00" * 20  # a pickle, named .safetensors
    made, uploads = await create(t, {"model.safetensors": fake})
    t.store.put_presigned(uploads["model.safetensors"].presigned_url, fake)
    with pytest.raises(Invalid, match=r"files\[0\] 'model.safetensors' is not a safetensors file") as refused:
        await models.confirm_model(t.c, ADMIN, None, made.id)
    assert refused.value.hint and "PUT the right file" in refused.value.hint
    assert blob(t, fake) is None and (await models.get_model(t.c, ADMIN, None, made.id)).status == "pending"


async def test_nothing_put_before_the_urls_expired_says_to_create_the_model_again() -> None:
    t = twins()
    made, _ = await create(t, {"model.safetensors": WEIGHTS})
    assert await t.tables.models.update(made.id, {"expires_at": now() - timedelta(seconds=1)})
    with pytest.raises(Invalid, match="nothing was PUT before its presigned_url expired at") as refused:
        await models.confirm_model(t.c, ADMIN, None, made.id)
    assert refused.value.hint == "create the model again (POST /v1/models) for new presigned URLs"


async def test_a_put_after_the_check_copy_cannot_change_the_stored_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    t = twins()
    made, uploads = await create(t, {"model.safetensors": WEIGHTS})
    url = uploads["model.safetensors"].presigned_url
    t.store.put_presigned(url, WEIGHTS)
    digest = t.store.digest

    async def put_again_then_digest(key: str, head_bytes: int = 0) -> tuple[int, str, bytes] | None:
        t.store.put_presigned(url, safetensors(b"\x66" * 16))  # the client PUTs other bytes meanwhile
        return await digest(key, head_bytes)

    monkeypatch.setattr(t.store, "digest", put_again_then_digest)
    assert (await models.confirm_model(t.c, ADMIN, None, made.id)).status == "ready"
    assert blob(t, WEIGHTS) == WEIGHTS  # the checked copy, not what was PUT after it
    monkeypatch.undo()
    t.store.put_presigned(url, safetensors(b"\x66" * 16))  # and a PUT after the confirm changes nothing
    assert (await models.confirm_model(t.c, ADMIN, None, made.id)).status == "ready"
    assert blob(t, WEIGHTS) == WEIGHTS


async def test_concurrent_confirms_make_the_model_ready_once_and_all_return_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = twins()
    files = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
    made, uploads = await create(t, files)
    for path, upload in uploads.items():
        t.store.put_presigned(upload.presigned_url, files[path])
    digest, update = t.store.digest, t.tables.models.update
    recorded: list[bool] = []

    async def slow_digest(key: str, head_bytes: int = 0) -> tuple[int, str, bytes] | None:
        await asyncio.sleep(0)  # let the other confirms copy and check too
        return await digest(key, head_bytes)

    async def recording_update(id: str, changes: Any, **where: Any) -> bool:
        recorded.append(await update(id, changes, **where))
        return recorded[-1]

    monkeypatch.setattr(t.store, "digest", slow_digest)
    monkeypatch.setattr(t.tables.models, "update", recording_update)
    seen = await asyncio.gather(*(models.confirm_model(t.c, ADMIN, None, made.id) for _ in range(3)))
    assert recorded.count(True) == 1
    stored = await t.tables.models.get(made.id)
    assert stored is not None and stored.status == "ready"
    assert all((s.status, s.ready_at) == ("ready", stored.ready_at) for s in seen)
    assert all(blob(t, data) == data for data in files.values()) and staged_keys(t) == []
    assert await stored_manifest(t) is not None


@pytest.mark.parametrize("moment", ["digest", "put_bytes"], ids=["while checking", "after the manifest"])
async def test_a_model_deleted_while_it_is_confirmed_leaves_no_manifest(
    moment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = twins()
    made, uploads = await create(t, {"model.safetensors": WEIGHTS})
    t.store.put_presigned(uploads["model.safetensors"].presigned_url, WEIGHTS)
    call = getattr(t.store, moment)

    async def then_deleted(*args: Any, **kw: Any) -> Any:
        done = await call(*args, **kw)
        await models.delete_model(t.c, ADMIN, None, made.id)
        return done

    monkeypatch.setattr(t.store, moment, then_deleted)
    with pytest.raises(NotFound, match=f"model {made.id!r} was deleted while it was confirmed"):
        await models.confirm_model(t.c, ADMIN, None, made.id)
    monkeypatch.undo()
    assert await stored_manifest(t) is None and await t.tables.models.find() == []


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("pytorch_model.bin", "files[1].path 'pytorch_model.bin': pickled weights run code"),
        ("weights/model.ckpt", "files[1].path 'weights/model.ckpt': pickled weights run code"),
        ("../model.safetensors", "files[1].path '../model.safetensors': a file path must be relative"),
        ("/abs/model.safetensors", "files[1].path '/abs/model.safetensors': a file path must be relative"),
        ("my model.safetensors", "files[1].path 'my model.safetensors': a file path may hold only"),
    ],
)
async def test_a_file_that_cannot_be_stored_is_refused_at_create_naming_it(path: str, detail: str) -> None:
    t = twins()
    with pytest.raises(Invalid) as refused:
        await create(t, {"config.json": CONFIG, path: WEIGHTS})
    assert detail in refused.value.detail and refused.value.hint
    if path.endswith((".bin", ".ckpt")):
        assert "convert them to safetensors" in refused.value.detail
    assert await t.tables.models.find() == []


@pytest.mark.parametrize(
    ("ns", "name", "detail", "hint"),
    [
        (None, "not a repo", "name 'not a repo' is not a Hugging Face repo id", "owner/name"),
        (None, "a/b/c", "name 'a/b/c' is not a Hugging Face repo id", "owner/name"),
        (None, "-acme/x", "name '-acme/x' is not a Hugging Face repo id", "owner/name"),
        ("a", "acme/tiny-bert", "name 'acme/tiny-bert' must start with a letter or digit", "my-fine-tuned-bert"),
        ("a", "_hidden", "name '_hidden' must start with a letter or digit", "my-fine-tuned-bert"),
        ("a", "x" * 129, "must start with a letter or digit and hold at most 128", "my-fine-tuned-bert"),
    ],
)
async def test_a_bad_name_is_refused_with_the_pattern_of_its_scope(
    ns: str | None, name: str, detail: str, hint: str
) -> None:
    t = twins()
    await t.namespace("a")
    with pytest.raises(Invalid) as refused:
        await create(t, {"model.safetensors": WEIGHTS}, name=name, ns=ns)
    assert detail in refused.value.detail and hint in (refused.value.hint or "")
    assert await t.tables.models.find() == []


@pytest.mark.parametrize(
    ("files", "detail", "hint"),
    [
        ([], "files: a model has 1 to 1000 files, not 0", "list every file"),
        (
            [FileSpec(f"f{i}.json", 1, "0" * 64) for i in range(1001)],
            "files: a model has 1 to 1000 files, not 1001",
            "at most 1000",
        ),
        (
            [FileSpec("a.safetensors", 1, "0" * 64), FileSpec("a.safetensors", 1, "1" * 64)],
            "files[1].path 'a.safetensors': files[0] has this path too",
            "once",
        ),
        ([FileSpec("a.safetensors", 1, "abc")], "files[0].sha256 'abc' is not 64 hex digits", "sha256sum"),
        ([FileSpec("a.safetensors", -1, "0" * 64)], "files[0].size_bytes -1 is negative", "exact size"),
        ([FileSpec("a.safetensors", 2049, "0" * 64)], "add up to 2049 bytes; the limit is 2048", "MAX_MODEL_BYTES"),
    ],
    ids=["no files", "too many", "same path twice", "bad sha256", "negative size", "too large"],
)
async def test_a_bad_file_list_is_refused_naming_the_field(files: list[FileSpec], detail: str, hint: str) -> None:
    t = twins(max_model_bytes=2048)
    with pytest.raises(Invalid) as refused:
        await models.create_model(t.c, ADMIN, None, REPO, files)
    assert detail in refused.value.detail and hint in (refused.value.hint or "")
    assert await t.tables.models.find() == []


async def test_a_namespace_model_needs_weights_and_an_upper_case_sha256_is_accepted() -> None:
    t = twins()
    await t.namespace("a")
    with pytest.raises(Invalid, match="a namespace model needs at least one weights file") as refused:
        await create(t, {"config.json": CONFIG}, name="only-config", ns="a")
    assert refused.value.hint and "safetensors" in refused.value.hint
    made, _ = await models.create_model(
        t.c, ADMIN, "a", "bert_1_0_0", [FileSpec("model.onnx", 3, sha(b"\x08\x07\x00").upper())]
    )
    assert made.files[0].sha256 == sha(b"\x08\x07\x00")


async def test_cluster_writes_need_an_org_admin_key_but_any_key_reads() -> None:
    t = twins()
    await t.namespace("a")
    ready = await imported(t, {"model.safetensors": WEIGHTS})
    for who in (MEMBER, limited_to("ns_a")):
        with pytest.raises(Forbidden, match="importing a cluster model needs an org-admin key") as refused:
            await create(t, {"model.safetensors": WEIGHTS}, name="acme/other", who=who)
        assert refused.value.hint and "org-admin" in refused.value.hint
        with pytest.raises(Forbidden, match="confirming a cluster model needs an org-admin key"):
            await models.confirm_model(t.c, who, None, ready.id)
        with pytest.raises(Forbidden, match="deleting a cluster model needs an org-admin key"):
            await models.delete_model(t.c, who, None, ready.id)
        assert await models.get_model(t.c, who, None, ready.id) == ready
        assert await models.list_models(t.c, who, None, 0, 10) == ([ready], 1)
    assert await stored_manifest(t) is not None and [m.id for m in await t.tables.models.find()] == [ready.id]


async def test_a_namespace_model_is_out_of_reach_of_other_namespaces_and_of_the_cluster() -> None:
    t = twins()
    await t.namespace("a")
    await t.namespace("b")
    mine = await imported(t, {"model.safetensors": WEIGHTS}, name="bert_1_0_0", ns="a")
    assert mine.namespace_id == "ns_a"
    manifest = await stored_manifest(t, "bert_1_0_0", "ns_a")
    assert manifest is not None and manifest.namespace_id == "ns_a" and blob(t, WEIGHTS, "ns_a") == WEIGHTS
    member_of_a = limited_to("ns_a")
    assert (await models.get_model(t.c, member_of_a, "a", mine.id)).id == mine.id  # any key of the namespace

    stranger = limited_to("ns_b")
    assert await models.list_models(t.c, stranger, "b", 0, 10) == ([], 0)
    for call in (models.get_model, models.confirm_model, models.delete_model):
        with pytest.raises(NotFound, match=f"model {mine.id!r} not found in namespace 'b'"):
            await call(t.c, stranger, "b", mine.id)
        with pytest.raises(NotFound, match="namespace 'a' not found"):
            await call(t.c, stranger, "a", mine.id)
        with pytest.raises(NotFound, match=f"model {mine.id!r} not found in the cluster"):
            await call(t.c, ADMIN, None, mine.id)
    with pytest.raises(NotFound, match="namespace 'a' not found"):
        await models.list_models(t.c, stranger, "a", 0, 10)
    assert await models.list_models(t.c, ADMIN, None, 0, 10) == ([], 0)
    assert await t.tables.models.get(mine.id) is not None and await stored_manifest(t, "bert_1_0_0", "ns_a")


async def test_a_reimport_replaces_the_ready_model_once_it_is_ready_keeping_shared_blobs() -> None:
    t = twins()
    old_weights = safetensors(b"\x01" * 16)
    old = await imported(t, {"config.json": CONFIG, "model.safetensors": old_weights}, revision="v1")
    new_files = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
    made, uploads = await create(t, new_files, revision="v2")
    assert list(uploads) == ["model.safetensors"]
    # While the new one is pending, the old one is what readers find.
    before = await stored_manifest(t)
    assert before is not None and before.revision == "v1"
    assert {m.id for m in (await models.list_models(t.c, ADMIN, None, 0, 10))[0]} == {old.id, made.id}

    t.store.put_presigned(uploads["model.safetensors"].presigned_url, WEIGHTS)
    new = await models.confirm_model(t.c, ADMIN, None, made.id)
    after = await stored_manifest(t)
    assert after is not None and (after.revision, after.files) == ("v2", new.files)
    assert await t.tables.models.get(old.id) is None
    assert [m.id for m in (await models.list_models(t.c, ADMIN, None, 0, 10))[0]] == [new.id]
    assert blob(t, old_weights) is None  # only the old model listed it
    assert blob(t, CONFIG) == CONFIG and blob(t, WEIGHTS) == WEIGHTS  # the new one lists these


async def test_a_reimport_confirmed_within_the_same_millisecond_still_replaces_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = twins()
    frozen, fresh_ids = now(), iter(["mdl_zzz", "mdl_aaa"])  # the old id sorts last
    monkeypatch.setattr(models, "now", lambda: frozen)
    monkeypatch.setattr(ids, "new_id", lambda prefix: next(fresh_ids))
    old = await imported(t, {"model.safetensors": safetensors(b"\x01" * 16)}, revision="v1")
    new = await imported(t, {"model.safetensors": WEIGHTS}, revision="v2")
    assert (old.id, new.id) == ("mdl_zzz", "mdl_aaa")
    assert [m.id for m in await t.tables.models.find()] == [new.id]
    manifest = await stored_manifest(t)
    assert manifest is not None and manifest.revision == "v2"


async def test_delete_removes_the_manifest_and_the_blobs_no_other_model_lists() -> None:
    t = twins()
    ours = await imported(t, {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    theirs = await imported(t, {"config.json": CONFIG, "model.onnx": b"\x08\x07"}, name="acme/onnx")
    gone = await models.delete_model(t.c, ADMIN, None, ours.id)
    assert (gone.id, gone.name) == (ours.id, REPO)
    assert await stored_manifest(t) is None
    assert blob(t, WEIGHTS) is None and blob(t, CONFIG) == CONFIG  # acme/onnx lists config.json too
    with pytest.raises(NotFound):
        await models.get_model(t.c, ADMIN, None, ours.id)
    assert await stored_manifest(t, "acme/onnx") is not None and (await t.tables.models.get(theirs.id)) is not None


async def test_a_pending_model_that_relies_on_a_stored_blob_keeps_it_when_its_owner_is_deleted() -> None:
    t = twins()
    owner = await imported(t, {"model.safetensors": WEIGHTS})
    pending, uploads = await create(t, {"config.json": CONFIG, "model.safetensors": WEIGHTS}, name="acme/next")
    assert list(uploads) == ["config.json"]
    await models.delete_model(t.c, ADMIN, None, owner.id)
    assert blob(t, WEIGHTS) == WEIGHTS
    t.store.put_presigned(uploads["config.json"].presigned_url, CONFIG)
    assert (await models.confirm_model(t.c, ADMIN, None, pending.id)).status == "ready"


async def test_deleting_a_pending_model_keeps_the_ready_manifest_of_its_name_and_clears_its_staging() -> None:
    t = twins()
    ready = await imported(t, {"model.safetensors": WEIGHTS}, revision="v1")
    pending, uploads = await create(t, {"model.safetensors": safetensors(b"\x02" * 16)}, revision="v2")
    t.store.put_presigned(uploads["model.safetensors"].presigned_url, b"not yet right")
    await models.delete_model(t.c, ADMIN, None, pending.id)
    manifest = await stored_manifest(t)
    assert manifest is not None and manifest.revision == "v1" and blob(t, WEIGHTS) == WEIGHTS
    assert staged_keys(t) == [] and await t.tables.models.get(ready.id) is not None
    assert t.store.uri(staging_key(pending.id, 0)) not in t.store.objects


# The routes, through the whole app on twins (as test_registry_app.py).

ADMIN_KEY = "fb_test_admin_key_0123456789abcdef"
VIEW_FIELDS = {
    "model_id",
    "name",
    "revision",
    "namespace_id",
    "status",
    "files",
    "total_bytes",
    "source",
    "error",
    "created_at",
    "ready_at",
}


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, MemoryObjectStore]]:
    settings = RegistrySettings(topic_prefix="t-models.", data_dir=tmp_path)
    tables, store = Tables.in_memory(), MemoryObjectStore()
    bus = Bus(settings, client_id="registry")
    app = build_app(settings, tables=tables, bus=bus, store=store)  # type: ignore[arg-type]
    await bootstrap_admin_key(tables, ADMIN_KEY, tmp_path)
    async with TestKafkaBroker(bus.broker):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=headers) as client:
            yield client, store


def file_entries(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": p, "size_bytes": len(d), "sha256": sha(d)} for p, d in files.items()]


async def test_the_cluster_routes_answer_the_contracts_shapes(
    http: tuple[httpx.AsyncClient, MemoryObjectStore],
) -> None:
    client, store = http
    files = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
    created = await client.post("/v1/models", json={"repo_id": REPO, "files": file_entries(files)})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == VIEW_FIELDS | {"uploads"}
    assert (body["name"], body["status"], body["namespace_id"], body["total_bytes"]) == (
        REPO,
        "pending",
        None,
        len(CONFIG) + len(WEIGHTS),
    )
    assert body["files"] == file_entries(files) and body["ready_at"] is None and body["source"] is None
    assert [set(u) for u in body["uploads"]] == [{"path", "presigned_url", "method", "expires_at"}] * 2
    assert {u["method"] for u in body["uploads"]} == {"PUT"}
    for u in body["uploads"]:
        store.put_presigned(u["presigned_url"], files[u["path"]])
    model_id = body["model_id"]

    confirmed = await client.post(f"/v1/models/{model_id}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert set(confirmed.json()) == VIEW_FIELDS and confirmed.json()["status"] == "ready"
    listing = await client.get("/v1/models", params={"limit": 5})
    assert listing.status_code == 200
    assert listing.json() == {"models": [confirmed.json()], "total": 1, "offset": 0, "limit": 5}
    assert (await client.get(f"/v1/models/{model_id}")).json() == confirmed.json()

    member = (await client.post("/v1/organizations/api-keys", json={"name": "member"})).json()["key"]
    as_member = {"Authorization": f"Bearer {member}"}
    assert (await client.get(f"/v1/models/{model_id}", headers=as_member)).status_code == 200
    refused = await client.delete(f"/v1/models/{model_id}", headers=as_member)
    assert refused.status_code == 403 and "org-admin" in refused.json()["detail"]
    refused = await client.post("/v1/models", headers=as_member, json={"name": REPO, "files": file_entries(files)})
    assert refused.status_code == 403

    deleted = await client.delete(f"/v1/models/{model_id}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "model_id": model_id, "name": REPO}
    missing = await client.get(f"/v1/models/{model_id}")
    assert missing.status_code == 404 and missing.json()["hint"] == "list its models with GET /v1/models"


async def test_the_namespace_routes_refuse_bad_requests_naming_the_field(
    http: tuple[httpx.AsyncClient, MemoryObjectStore],
) -> None:
    client, store = http
    assert (await client.post("/v1/namespaces", json={"namespace_name": "docs"})).status_code == 201
    pickled = {"config.json": CONFIG, "pytorch_model.bin": b"\x80\x02"}
    refused = await client.post("/v1/namespaces/docs/models", json={"name": "bert", "files": file_entries(pickled)})
    assert refused.status_code == 422 and "files[1].path 'pytorch_model.bin'" in refused.json()["detail"]
    assert refused.json()["hint"]
    untyped = await client.post(
        "/v1/namespaces/docs/models", json={"name": "bert", "files": [{"path": "a", "size_bytes": "many"}]}
    )
    assert untyped.status_code == 422 and "files.0.size_bytes" in untyped.json()["detail"]
    not_an_alias = await client.post(
        "/v1/namespaces/docs/models", json={"repo_id": "bert", "files": file_entries({"m.gguf": b"GGUF"})}
    )
    assert not_an_alias.status_code == 422 and "name" in not_an_alias.json()["detail"]

    made = await client.post(
        "/v1/namespaces/docs/models", json={"name": "bert_1_0_0", "files": file_entries({"m.gguf": b"GGUF"})}
    )
    assert made.status_code == 201, made.text
    model_id = made.json()["model_id"]
    pending = await client.post(f"/v1/namespaces/docs/models/{model_id}/confirm")
    assert (
        pending.status_code == 422
        and pending.json()["detail"] == "files[0] 'm.gguf': nothing was PUT to its presigned_url"
    )
    store.put_presigned(made.json()["uploads"][0]["presigned_url"], b"GGUF")
    ready = await client.post(f"/v1/namespaces/docs/models/{model_id}/confirm")
    assert ready.status_code == 200 and ready.json()["namespace_id"] == made.json()["namespace_id"]
    listing = (await client.get("/v1/namespaces/docs/models")).json()
    assert [m["model_id"] for m in listing["models"]] == [model_id] and listing["total"] == 1
    assert (await client.get("/v1/models")).json()["total"] == 0
    deleted = await client.delete(f"/v1/namespaces/docs/models/{model_id}")
    assert deleted.json() == {"deleted": True, "model_id": model_id, "name": "bert_1_0_0"}
