"""Hostile plugins through the real stack: upload, scan, batch on sandboxed Ray actors, index, search.

One plugin, accepted by the scanner: each of its rows names an attack and its target, so nothing
the scanner reads says what the plugin will do (the reason a static check cannot be the boundary).
It uses only the guide's libraries: pandas and numpy readers and writers, httpx, the SDK's
``open_asset``, torch's ``DataLoader`` (which forks its workers). Every attack row is its own
frame; each ends failed ``sandbox_violation`` (or, where it can only come back empty, written with
what it found, which holds none of the platform's secrets). The benign rows around them are
written, the worker is the same process afterwards, and no secret is in any log or response.

Plugins that name what they would do (``ctypes``, ``subprocess``) are the scanner's to refuse:
the last test uploads them and expects the refusal. The kernel-level answers to the same calls
are tested on the sandbox itself (services/inference/tests/test_sandbox.py).
"""

from __future__ import annotations

import io
import json
import sysconfig
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from stack import running_pid

from ._client import Api, zip_plugin
from ._retrieve import search_everything

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURE = "probe_v1"
FEATURE_URI = f"mixpeek://hostile@1.0.0/{FEATURE}"
VICTIM_MARK = "victim-secret-" + uuid.uuid4().hex[:12]

MANIFEST = f'''
feature_extractor_name = "hostile"
version = "1.0.0"
description = "Does what each row says"
features = [
    {{"feature_type": "embedding", "feature_name": "{FEATURE}", "embedding_dim": 4, "distance_metric": "cosine"}},
]
compute_profile = {{"resource_type": "cpu", "batch_size": 1, "max_concurrency": 1}}
'''

PIPELINE = """
from engine.plugins.extractors.pipeline import PipelineDefinition, ResourceType, StepDefinition, build_pipeline_steps

from .processors.core import Hostile


def build_steps(extractor_request, container=None, base_steps=None, **kwargs):
    steps = [StepDefinition(service_class=Hostile, resource_type=ResourceType.CPU)]
    return {"steps": build_pipeline_steps(PipelineDefinition(name="hostile", version="1.0.0", steps=steps))}
"""

PROCESSOR = f"""
import hashlib
import json
import os

import httpx
import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import torch
from shared.plugins import open_asset


def _read_bytes(path):
    return np.fromfile(path, dtype=np.uint8).tobytes().decode("latin-1")


def _grow(arg):
    chunks = []
    while True:  # address space only: np.empty touches no page
        chunks.append(np.empty(2**28, dtype=np.uint8))


def _asset(uri):
    with open_asset(uri) as path:
        return _read_bytes(path)


ATTACKS = {{
    "benign": lambda arg: "",
    "env": lambda arg: json.dumps(dict(os.environ)),
    "read_csv": lambda arg: pd.read_csv(arg, header=None, sep="\\x01").to_json(),
    "read_bytes": _read_bytes,
    # pyarrow reads and lists in C++: no audit event, only the mount namespace stands in the way
    "list_dir": lambda arg: json.dumps([i.base_name for i in pafs.LocalFileSystem().get_file_info(pafs.FileSelector(arg))]),
    "read_arrow": lambda arg: pafs.LocalFileSystem().open_input_stream(arg).read().decode("latin-1"),
    "write_csv": lambda arg: pd.DataFrame({{"a": [1]}}).to_csv(arg) or "",
    "write_own": lambda arg: np.save(os.path.join(os.path.dirname(__file__), "planted.npy"), np.zeros(4)) or "",
    "http": lambda arg: httpx.get(arg, timeout=3).text,
    "asset": _asset,
    "spawn": lambda arg: json.dumps([int(b) for b in torch.utils.data.DataLoader(list(range(4)), num_workers=1)]),
    "alloc": lambda arg: str(int(np.ones(2**37, dtype=np.uint8).sum())),
    "grow": _grow,
}}


class Hostile:
    def __init__(self, config=None):
        self.config = config

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        found = []
        for text in batch["data"]:
            name, _, arg = str(text).partition(" ")
            found.append(ATTACKS[name](arg))
        batch["{FEATURE}"] = [[b / 255.0 + 0.01 for b in hashlib.sha256(str(t).encode()).digest()[:4]] for t in batch["data"]]
        batch["found"] = found
        return batch
"""

# Written by plugins that say what they would do: refused before they run, the refusal naming the call.
OUTSPOKEN = {
    "ctypes": ("import ctypes\nLIBC = ctypes.CDLL('libc.so.6')\n", "ctypes"),
    "subprocess": ("import subprocess\nsubprocess.run(['/bin/true'])\n", "subprocess"),
    "asyncio_spawn": ("import asyncio\nasyncio.run(asyncio.create_subprocess_exec('/bin/true'))\n", "subprocess"),
}


# The files of the services' and the stack's data directories a listing must never show.
PLATFORM_FILES = {"secrets.key", "admin-api-key", "s3-identities.json", "logs", "pids", "mongo", "kafka", "qdrant"}


def archive(tmp: Path, processor: str = PROCESSOR) -> bytes:
    root = tmp / "hostile"
    (root / "processors").mkdir(parents=True, exist_ok=True)
    files = {"manifest.py": MANIFEST, "pipeline.py": PIPELINE, "__init__.py": "", "processors/__init__.py": ""}
    for rel, text in {**files, "processors/core.py": processor}.items():
        (root / rel).write_text(text.lstrip())
    return zip_plugin(root)


def victim_blob(api: Api) -> tuple[str, str]:
    """Another namespace's image in the object store, a marker in its bytes: (namespace_id, s3 URI)."""
    from PIL import Image, PngImagePlugin

    ns = api.namespace(f"victim-{uuid.uuid4().hex[:6]}")
    schema = {"properties": {"photo": {"type": "image"}}}
    bucket = api.call("POST", f"/v1/namespaces/{ns}/buckets", json={"name": "private", "bucket_schema": schema})
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", VICTIM_MARK)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(buffer, "PNG", pnginfo=info)
    data = buffer.getvalue()
    assert VICTIM_MARK.encode() in data
    up = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket['bucket_id']}/uploads",
        json={"filename": "private.png", "content_type": "image/png", "size_bytes": len(data)},
    )
    assert httpx.put(up["presigned_url"], content=data, timeout=60).status_code == 200
    obj = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket['bucket_id']}/objects",
        json={"blobs": [{"property": "photo", "type": "image", "upload_id": up["upload_id"]}]},
    )
    return ns, str(obj["blobs"][0]["uri"])


def platform_ports(platform: Any) -> list[int]:
    """Every TCP port the platform listens on: the stack's servers, the REST API, Ray's processes."""
    stack = platform.stack
    ports = {stack.kafka_port, stack.mongo_port, stack.s3_port, int(platform.base_url.rsplit(":", 1)[1])}
    pid = running_pid("svc-inference", platform.services.data_dir)
    assert pid is not None
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            ports.update(c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN)
        except psutil.Error:
            continue
    return sorted(ports)


def secrets_of(platform: Any) -> list[str]:
    """What must never appear in a plugin's output, a log or a response."""
    env = platform.stack.env()
    values = [platform.admin_key, env["FEATUREBUS_S3_SECRET_KEY"], VICTIM_MARK]
    key_file = platform.services.data_dir / "secrets.key"
    if key_file.exists():
        values.append(key_file.read_text().strip())
    return [v for v in values if v]


@pytest.fixture(scope="module")
def attacked(platform: Any, api: Api, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    victim_ns, victim_uri = victim_blob(api)
    ns = api.namespace(f"hostile-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "hostile", "1.0.0", archive(tmp_path_factory.mktemp("hostile")))
    status = api.wait_scan(ns, plugin_id)
    assert status["scan"]["status"] == "passed", status  # the scanner cannot see what the rows will ask
    api.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")

    data_dir, stack_dir = platform.services.data_dir, platform.stack.data_dir
    bucket_name = platform.stack.env()["FEATUREBUS_S3_BUCKET"]
    s3 = f"http://127.0.0.1:{platform.stack.s3_port}"
    attacks = {
        "victim blob by URI": f"asset {victim_uri}",
        "victim blob by a guessed key": f"asset s3://{bucket_name}/{victim_ns}/",
        "victim blob through a path in the key": f"asset s3://{bucket_name}/{ns}/../{victim_uri.split('/', 3)[3]}",
        "the bucket listed over S3": f"http {s3}/{bucket_name}?list-type=2",
        "the secrets key file": f"read_csv {data_dir}/secrets.key",
        "a write into the data dir": f"write_csv {data_dir}/planted.csv",
        "a write into the Python environment": f"write_csv {sysconfig.get_paths()['purelib']}/planted.csv",
        "a write into /etc": "write_csv /etc/planted.csv",
        "a write into the plugin's own files": "write_own x",
        "the metadata address": "http http://169.254.169.254/latest/meta-data/",
        "a forked worker process": "spawn x",
        "one huge allocation": "alloc x",
        "allocation until the limit": "grow x",
    }
    attacks.update({f"platform port {p}": f"http http://127.0.0.1:{p}/" for p in platform_ports(platform)})
    # Where no Python-level check sees the call (pyarrow's C++ file system), or the path lies
    # outside the services' data dir: refused, or not there at all (the sandbox's root holds only
    # the Python environment, the plugin's files and the model cache; /tmp is its scratch).
    contained = {
        "identities": f"read_bytes {stack_dir}/s3-identities.json",
        "stack_dir": f"list_dir {stack_dir}",
        "data_dir": f"list_dir {data_dir}",
        "key_file": f"read_arrow {data_dir}/secrets.key",
        "admin_key": f"read_arrow {data_dir}/admin-api-key",
        "planted": f"write_csv {stack_dir}/planted.csv",
    }
    texts = ["benign first", "env x", *attacks.values(), *contained.values(), "benign last"]
    schema = {"properties": {"text": {"type": "text"}}}
    bucket = api.call("POST", f"/v1/namespaces/{ns}/buckets", json={"name": "rows", "bucket_schema": schema})
    bucket_id = bucket["bucket_id"]
    object_ids = api.add_texts(ns, bucket_id, texts)
    col = api.call(
        "POST",
        f"/v1/namespaces/{ns}/collections",
        json={
            "name": "hostile",
            "feature_extractors": [{"feature_extractor_name": "hostile", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [bucket_id]},
        },
    )["collection_id"]
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket_id}/batches/trigger", json={"collection_ids": [col]}
    )["batch_id"]
    inference_pid = running_pid("svc-inference", platform.services.data_dir)
    done = api.wait_batch(ns, bucket_id, batch_id, timeout=600)
    failed = api.call("GET", f"/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/failed-documents")
    return {
        "ns": ns, "bucket": bucket_id, "col": col, "batch": done, "failed": failed["results"],
        "texts": dict(zip(object_ids, texts, strict=True)), "attacks": attacks, "contained": contained,
        "inference_pid": inference_pid,
    }  # fmt: skip


def search_all(api: Api, ns: str, col: str) -> list[dict[str, Any]]:
    return search_everything(api, ns, col, FEATURE_URI, "benign query")


def test_every_attack_fails_its_own_row_with_sandbox_violation(attacked: dict[str, Any]) -> None:
    batch, texts, attacks = attacked["batch"], attacked["texts"], attacked["attacks"]
    by_text = {texts[row["object_id"]]: row for row in attacked["failed"]}
    summary = {text: (row["reason"], row["message"]) for text, row in by_text.items()}
    assert {cmd: summary.get(cmd) for cmd in attacks.values()} == {
        cmd: ("sandbox_violation", by_text[cmd]["message"]) for cmd in attacks.values() if cmd in by_text
    } and set(attacks.values()) <= set(by_text), summary
    assert set(by_text) - set(attacks.values()) <= set(attacked["contained"].values()), summary
    for text, row in by_text.items():
        if row["reason"] == "sandbox_violation":  # what was refused, and what to do instead
            assert row["message"] and row.get("hint"), row
        else:  # a stack path the sandbox does not have at all
            assert text in attacked["contained"].values(), row
            assert "No such file" in row["message"] or "non-existent directory" in row["message"], row
    assert batch["status"] == "COMPLETED_WITH_ERRORS", batch
    assert (batch["rows_in"], batch["rows_failed"]) == (len(texts), len(by_text)), batch
    assert batch["rows_written"] == len(texts) - len(by_text), batch
    assert batch["failure_summary"]["sandbox_violation"] >= len(attacks), batch


def test_the_other_rows_are_written_and_hold_no_secret(platform: Any, api: Api, attacked: dict[str, Any]) -> None:
    results = search_all(api, attacked["ns"], attacked["col"])
    written = {attacked["texts"][r["object_id"]]: r for r in results}
    assert {"benign first", "env x", "benign last"} <= set(written) <= {
        "benign first", "env x", "benign last", *attacked["contained"].values()
    }, sorted(written)  # fmt: skip
    env = json.loads(written["env x"]["found"])
    assert not [k for k in env if k.startswith(("FEATUREBUS_", "AWS_", "RAY_"))], sorted(env)
    found = json.dumps([r.get("found") for r in results])
    assert not [s for s in secrets_of(platform) if s in found]
    for name in ("stack_dir", "data_dir"):
        listed = written.get(attacked["contained"][name])
        if listed is not None:  # at most the mount points of the plugin's own files: none of the platform's
            assert not PLATFORM_FILES & set(json.loads(listed["found"])), listed["found"]
    for name in ("key_file", "admin_key"):
        assert attacked["contained"][name] not in written, "a key file was read"
    for directory in (platform.services.data_dir, platform.stack.data_dir):
        assert not (directory / "planted.csv").exists()


def test_the_worker_survives_and_serves_the_next_batch(platform: Any, api: Api, attacked: dict[str, Any]) -> None:
    ns, bucket, col = attacked["ns"], attacked["bucket"], attacked["col"]
    assert running_pid("svc-inference", platform.services.data_dir) == attacked["inference_pid"]
    (again,) = api.add_texts(ns, bucket, ["benign again"])
    batch_id = api.call(
        "POST", f"/v1/namespaces/{ns}/buckets/{bucket}/batches/trigger", json={"collection_ids": [col]}
    )["batch_id"]
    done = api.wait_batch(ns, bucket, batch_id, timeout=300)
    assert done["rows_written"] >= 1, done
    assert again in {r["object_id"] for r in search_all(api, ns, col)}


def test_nothing_refused_reaches_a_log_or_a_response(platform: Any, api: Api, attacked: dict[str, Any]) -> None:
    responses = json.dumps([attacked["batch"], attacked["failed"], search_all(api, attacked["ns"], attacked["col"])])
    logs = {name: platform.log(name) for name in ("registry", "scanner", "dispatcher", "inference", "indexer")}
    assert "sandbox_violation" in logs["inference"] or "sandbox_violation" in logs["indexer"]
    for secret in secrets_of(platform):
        assert secret not in responses
        assert not [name for name, text in logs.items() if secret in text], "a secret reached a log"


@pytest.mark.parametrize("name", sorted(OUTSPOKEN))
def test_plugins_that_say_what_they_would_do_are_refused_by_the_scanner(api: Api, tmp_path: Path, name: str) -> None:
    ns = api.namespace(f"outspoken-{uuid.uuid4().hex[:6]}")
    plugin_id = api.upload_plugin(ns, "hostile", "1.0.0", archive(tmp_path, OUTSPOKEN[name][0] + PROCESSOR))
    scan = api.wait_scan(ns, plugin_id)["scan"]
    assert scan["status"] == "failed", scan
    refused = [v for v in scan.get("violations", []) if v.get("severity", "ERROR") == "ERROR"]
    assert refused and all(v["code"].startswith("SEC") for v in refused), scan
    assert any(OUTSPOKEN[name][1] in v["message"] for v in refused), scan
