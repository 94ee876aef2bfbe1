"""A small client of the featurebus REST API: what the CLI's ``publish``, scripts and benchmarks use.

    from featurebus.sdk.client import Client

    with Client("http://127.0.0.1:8000", key) as fb:
        ns = fb.create_namespace("docs")["namespace_id"]
        plugin_id = fb.upload_plugin(ns, archive, "text_embed", "1.0.0")["plugin_id"]
        model, sent = fb.push_model("owner/name", read_source(Path("my-model")))  # a cluster model

Every error answer raises :class:`ApiError` with the registry's ``detail`` and ``hint``. It needs
httpx, which comes with the CLI: ``pip install 'featurebus-sdk[cli]'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from featurebus.common.model_store import ModelFile
from featurebus.sdk.model_sources import ModelSource, Progress, SourceFile

__all__ = ["TERMINAL_BATCH_STATES", "ApiError", "Client"]

TERMINAL_BATCH_STATES = frozenset({"COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELED"})
MAX_OBJECTS_PER_REQUEST = 1000
MAX_PAGE = 1000  # the registry's largest ``limit``
T = TypeVar("T")


class ApiError(Exception):
    """An error answer of the API: the status, the registry's detail and hint."""

    def __init__(self, method: str, path: str, status: int, detail: str, hint: str | None = None) -> None:
        super().__init__(f"{method} {path}: {status} {detail}" + (f" (hint: {hint})" if hint else ""))
        self.method, self.path, self.status, self.detail, self.hint = method, path, status, detail, hint


class Client:
    """``transport`` replaces the network (tests pass an ``httpx.MockTransport``)."""

    def __init__(self, url: str, key: str, timeout: float = 60, transport: httpx.BaseTransport | None = None) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout, transport=transport
        )
        # Presigned URLs carry their own signature: the API key is not sent to the object store
        # (S3 refuses a request that is authorized twice).
        self.store = httpx.Client(timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        self.store.close()

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """The answer's JSON (None for an empty one); :class:`ApiError` for a 4xx or 5xx."""
        response = self.http.request(method, path, **kw)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            detail = body.get("detail") if isinstance(body, dict) else None
            hint = body.get("hint") if isinstance(body, dict) else None
            raise ApiError(method, path, response.status_code, str(detail or response.text[:500]), hint)
        return response.json() if response.content else None

    # -------------------------------------------------------------------------- namespaces, plugins

    def create_namespace(self, name: str) -> dict[str, Any]:
        return dict(self.request("POST", "/v1/namespaces", json={"namespace_name": name}))

    def upload_plugin(self, ns: str, archive: bytes, name: str, version: str) -> dict[str, Any]:
        """Upload an archive and confirm it (the scan starts); the upload (``plugin_id``, ``upload_id``)."""
        up = self.request(
            "POST",
            f"/v1/namespaces/{ns}/plugins/uploads",
            json={"name": name, "version": version, "file_size_bytes": len(archive)},
        )
        put = httpx.put(up["presigned_url"], content=archive, timeout=300)
        if put.status_code >= 300:
            raise ApiError(
                "PUT", "<presigned_url>", put.status_code, f"the object store refused the upload: {put.text[:200]}"
            )
        self.request("POST", f"/v1/namespaces/{ns}/plugins/uploads/{up['upload_id']}/confirm")
        return dict(up)

    def plugin_status(self, ns: str, plugin_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/namespaces/{ns}/plugins/{plugin_id}/status"))

    def wait_for_scan(
        self,
        ns: str,
        plugin_id: str,
        timeout: float = 300,
        on_wait: Callable[[], None] | None = None,
        every: float = 1.0,
    ) -> dict[str, Any]:
        """The plugin's status once the scan has a verdict (``scan.status`` passed or failed)."""
        return wait(
            lambda: self.plugin_status(ns, plugin_id),
            lambda s: s["scan"]["status"] != "scanning",
            timeout,
            f"the scan of {plugin_id}",
            every=every,
            on_wait=on_wait,
        )

    def deploy_for_batch(self, ns: str, plugin_id: str) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", f"/v1/namespaces/{ns}/plugins/{plugin_id}/deploy", params={"deployment_type": "batch_only"}
            )
        )

    # ------------------------------------------------------------------ buckets, objects, batches

    def create_bucket(self, ns: str, name: str, properties: dict[str, Any]) -> dict[str, Any]:
        body = {"name": name, "bucket_schema": {"properties": properties}}
        return dict(self.request("POST", f"/v1/namespaces/{ns}/buckets", json=body))

    def add_objects(self, ns: str, bucket_id: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add objects in bulk requests of at most 1,000; the objects as stored, in order."""
        path = f"/v1/namespaces/{ns}/buckets/{bucket_id}/objects/batch"
        return [
            stored
            for i in range(0, len(objects), MAX_OBJECTS_PER_REQUEST)
            for stored in self.request("POST", path, json={"objects": objects[i : i + MAX_OBJECTS_PER_REQUEST]})[
                "objects"
            ]
        ]

    def add_texts(self, ns: str, bucket_id: str, texts: list[str], prop: str = "text") -> list[str]:
        """One object per text (property ``prop``); their object ids, in order."""
        objects = [{"blobs": [{"property": prop, "type": "text", "data": t}]} for t in texts]
        return [str(o["object_id"]) for o in self.add_objects(ns, bucket_id, objects)]

    def create_collection(self, ns: str, name: str, extractor: str, version: str, bucket_ids: list[str]) -> str:
        body = {
            "name": name,
            "feature_extractors": [{"feature_extractor_name": extractor, "version": version}],
            "source": {"type": "bucket", "bucket_ids": bucket_ids},
        }
        return str(self.request("POST", f"/v1/namespaces/{ns}/collections", json=body)["collection_id"])

    def trigger_batch(self, ns: str, bucket_id: str, collection_ids: list[str]) -> dict[str, Any]:
        path = f"/v1/namespaces/{ns}/buckets/{bucket_id}/batches/trigger"
        return dict(self.request("POST", path, json={"collection_ids": collection_ids}))

    def wait_for_batch(
        self, ns: str, bucket_id: str, batch_id: str, timeout: float = 1800, every: float = 0.5
    ) -> dict[str, Any]:
        """The batch once it is COMPLETED, COMPLETED_WITH_ERRORS or FAILED."""
        return wait(
            lambda: dict(self.request("GET", f"/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}")),
            lambda b: b["status"] in TERMINAL_BATCH_STATES,
            timeout,
            f"batch {batch_id}",
            every=every,
        )

    # -------------------------------------------------------------------------------------- models
    # ``namespace`` None: the installation's cluster models (Hugging Face repo ids; creating and
    # deleting them takes an org-admin key); else that namespace's own models.

    @staticmethod
    def models_path(namespace: str | None = None) -> str:
        return "/v1/models" if namespace is None else f"/v1/namespaces/{namespace}/models"

    def create_model(
        self,
        name: str,
        files: list[ModelFile],
        namespace: str | None = None,
        revision: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """A pending model: its ModelView and ``uploads``, the files the registry does not hold yet."""
        body = {
            "name": name,
            "revision": revision,
            "source": source,
            "files": [f.model_dump() for f in files],
        }
        return dict(self.request("POST", self.models_path(namespace), json=body))

    def put_model_file(self, upload: dict[str, Any], file: SourceFile, progress: Progress | None = None) -> None:
        """Stream ``file`` to the presigned URL of ``upload``, a chunk at a time."""
        if progress is not None:
            progress.start(file.path, file.size_bytes)
        where = f"<presigned_url of {file.path}>"
        method = str(upload.get("method") or "PUT")
        try:
            # An explicit Content-Length: the object store refuses chunked uploads.
            answer = self.store.request(
                method,
                upload["presigned_url"],
                content=file.chunks(progress),
                headers={"Content-Length": str(file.size_bytes)},
            )
        except httpx.TransportError as err:
            raise ApiError(
                method,
                where,
                0,
                f"could not send {file.path} to the object store: {err}",
                "the presigned URLs name the registry's object-store endpoint: it must be reachable from here",
            ) from err
        if answer.status_code >= 300:
            raise ApiError(
                method,
                where,
                answer.status_code,
                f"the object store refused {file.path}: {answer.text[:200]}",
                f"the URL expires at {upload.get('expires_at')}; if it has expired, run the command again for new ones",
            )

    def confirm_model(self, model_id: str, namespace: str | None = None) -> dict[str, Any]:
        """The ready ModelView, once the registry has checked every uploaded file."""
        return dict(self.request("POST", f"{self.models_path(namespace)}/{model_id}/confirm"))

    def push_model(
        self, name: str, source: ModelSource, namespace: str | None = None, progress: Progress | None = None
    ) -> tuple[dict[str, Any], list[str]]:
        """Register the files of ``source``, upload those the registry lacks, confirm: the ready
        ModelView and the paths that were sent (the others were already stored)."""
        created = self.create_model(
            name, [f.model_file() for f in source.files], namespace, source.revision, source.description
        )
        by_path = {f.path: f for f in source.files}
        sent = []
        for upload in created.get("uploads") or []:
            file = by_path.get(upload["path"])
            if file is None:
                raise ApiError(
                    "POST",
                    self.models_path(namespace),
                    201,
                    f"the registry asked for {upload['path']!r}, which is not a file of this model",
                )
            self.put_model_file(upload, file, progress)
            sent.append(file.path)
        return self.confirm_model(created["model_id"], namespace), sent

    def list_models(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every model of the scope (all pages), oldest first."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", self.models_path(namespace), params={"offset": len(found), "limit": MAX_PAGE})
            found += page["models"]
            if not page["models"] or len(found) >= page["total"]:
                return found

    def get_model(self, model_id: str, namespace: str | None = None) -> dict[str, Any]:
        return dict(self.request("GET", f"{self.models_path(namespace)}/{model_id}"))

    def delete_model(self, model_id: str, namespace: str | None = None) -> dict[str, Any]:
        """``{"deleted": true, "model_id", "name"}``; the blobs no other model uses go with it."""
        return dict(self.request("DELETE", f"{self.models_path(namespace)}/{model_id}"))


def wait(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    every: float = 0.5,
    on_wait: Callable[[], None] | None = None,
) -> T:
    """Poll ``fetch`` until ``done``; TimeoutError naming ``what`` and the last answer."""
    deadline = time.monotonic() + timeout
    while not done(value := fetch()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout:g}s; last seen: {value}")
        if on_wait is not None:
            on_wait()
        time.sleep(every)
    return value
