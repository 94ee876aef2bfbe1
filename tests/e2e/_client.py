"""A small REST driver for the walkthrough, shared by the e2e tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx

from featurebus.sdk.client import Client

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "plugins"
FEATUREBUS = Path(sys.executable).with_name("featurebus")


def zip_plugin(plugin_dir: Path, overrides: dict[str, str] | None = None) -> bytes:
    """Zip a plugin directory as `zip -r name.zip name/` would, with optional file overrides."""
    buffer = io.BytesIO()
    overrides = dict(overrides or {})
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(plugin_dir.rglob("*")):
            rel = path.relative_to(plugin_dir)
            if path.is_dir() or "__pycache__" in rel.parts or rel.parts[0] == "tests" or rel.suffix == ".pyc":
                continue
            arc = f"{plugin_dir.name}/{rel.as_posix()}"
            zf.writestr(arc, overrides.pop(rel.as_posix(), path.read_bytes()))
        for rel, text in overrides.items():
            zf.writestr(f"{plugin_dir.name}/{rel}", text)
    return buffer.getvalue()


def small_frames_plugin() -> bytes:
    """The example plugin with 8-row frames and two actors, so a batch spans many frames."""
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    assert '"batch_size": 64' in manifest and '"max_concurrency": 1' in manifest
    manifest = manifest.replace('"batch_size": 64', '"batch_size": 8').replace(
        '"max_concurrency": 1', '"max_concurrency": 2'
    )
    return zip_plugin(EXAMPLES / "text_embed", {"manifest.py": manifest})


def text_embed_archive(version: str) -> bytes:
    """The example plugin as version ``version`` (its manifest says so too, as the scan checks)."""
    manifest = (EXAMPLES / "text_embed" / "manifest.py").read_text()
    assert 'version = "1.0.0"' in manifest
    return zip_plugin(
        EXAMPLES / "text_embed", {"manifest.py": manifest.replace('version = "1.0.0"', f'version = "{version}"')}
    )


class Api:
    """The SDK's REST client plus what the tests need: any call with its expected status."""

    def __init__(self, base_url: str, key: str) -> None:
        self.base_url, self.key = base_url, key
        self.client = Client(base_url, key)
        self.http = self.client.http

    def call(self, method: str, path: str, expect: int | tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        response = self.http.request(method, path, **kw)
        codes = (expect,) if isinstance(expect, int) else expect
        assert response.status_code in codes, f"{method} {path} → {response.status_code}: {response.text}"
        return response.json() if response.content else None

    def namespace(self, name: str) -> str:
        return str(self.client.create_namespace(name)["namespace_id"])

    def upload_plugin(self, ns: str, name: str, version: str, archive: bytes) -> str:
        return str(self.client.upload_plugin(ns, archive, name, version)["plugin_id"])

    def wait_scan(self, ns: str, plugin_id: str, timeout: float = 90) -> dict[str, Any]:
        return self.client.wait_for_scan(ns, plugin_id, timeout, every=0.5)

    def wait_batch(
        self, ns: str, bucket_id: str, batch_id: str, timeout: float = 300, every: float = 0.5
    ) -> dict[str, Any]:
        return self.client.wait_for_batch(ns, bucket_id, batch_id, timeout, every)

    @staticmethod
    def wait(fetch: Any, done: Any, timeout: float, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = fetch()
            if done(value):
                return value
            assert time.monotonic() < deadline, f"timed out after {timeout}s; last: {value}"
            time.sleep(every)

    def upload_org_plugin(self, name: str, version: str, archive: bytes) -> dict[str, Any]:
        """Upload an organization plugin (org-admin key) and confirm it; the upload (``plugin_id``, ``upload_id``)."""
        up = self.call("POST", "/v1/plugins/uploads", json={"name": name, "version": version})
        assert httpx.put(up["presigned_url"], content=archive, timeout=300).status_code < 300
        self.call("POST", f"/v1/plugins/uploads/{up['upload_id']}/confirm")
        return dict(up)

    def wait_org_scan(self, plugin_id: str, timeout: float = 90) -> dict[str, Any]:
        """The organization plugin's document once its scan has a verdict."""
        return dict(
            self.wait(
                lambda: self.call("GET", f"/v1/plugins/{plugin_id}")["plugin"],
                lambda p: p["validation_status"] != "pending",
                timeout,
            )
        )

    def deploy_batch_plugin(self, ns: str, name: str, version: str, archive: bytes) -> str:
        """Upload a plugin, check that its scan passes, deploy it for batch work; its plugin_id."""
        plugin_id = self.upload_plugin(ns, name, version, archive)
        assert self.wait_scan(ns, plugin_id)["scan"]["status"] == "passed"
        self.call("POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
        return plugin_id

    def text_bucket(self, ns: str, name: str, texts: list[str]) -> str:
        """A bucket with one text property holding one object per text; its bucket_id."""
        schema = {"properties": {"text": {"type": "text"}}}
        bucket = self.call("POST", f"/v1/namespaces/{ns}/buckets", json={"name": name, "bucket_schema": schema})
        self.add_texts(ns, bucket["bucket_id"], texts)
        return str(bucket["bucket_id"])

    def run_collection(
        self, ns: str, plugin_name: str, texts: list[str], timeout: float = 300
    ) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
        """A bucket of ``texts``, a collection of plugin ``plugin_name`` 1.0.0 over it, and one batch
        run to its end: (collection_id, the finished batch, its failed rows)."""
        bucket = self.text_bucket(ns, "b", texts)
        collection = self.call(
            "POST",
            f"/v1/namespaces/{ns}/collections",
            json={
                "name": "c",
                "feature_extractors": [{"feature_extractor_name": plugin_name, "version": "1.0.0"}],
                "source": {"type": "bucket", "bucket_ids": [bucket]},
            },
        )["collection_id"]
        batches = f"/v1/namespaces/{ns}/buckets/{bucket}/batches"
        batch_id = self.call("POST", f"{batches}/trigger", json={"collection_ids": [collection]})["batch_id"]
        done = self.wait_batch(ns, bucket, batch_id, timeout=timeout)
        failed = self.call("GET", f"{batches}/{batch_id}/failed-documents")
        rows = failed if isinstance(failed, list) else failed.get("results") or failed.get("documents") or []
        return str(collection), done, rows

    def add_texts(self, ns: str, bucket_id: str, texts: list[str]) -> list[str]:
        """Add one object per text: one at a time for a single text, else in bulk requests of 1,000."""
        objects = [{"blobs": [{"property": "text", "type": "text", "data": t}]} for t in texts]
        path = f"/v1/namespaces/{ns}/buckets/{bucket_id}/objects"
        if len(objects) == 1:
            return [self.call("POST", path, json=objects[0])["object_id"]]
        return [
            o["object_id"]
            for i in range(0, len(objects), 1000)
            for o in self.call("POST", f"{path}/batch", json={"objects": objects[i : i + 1000]})["objects"]
        ]


def cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``featurebus`` command against the test platform, with the key of ``api``."""
    env = {**os.environ, "FEATUREBUS_URL": api.base_url, "FEATUREBUS_API_KEY": api.key}
    return subprocess.run([str(FEATUREBUS), *args], env=env, capture_output=True, text=True, timeout=300)
