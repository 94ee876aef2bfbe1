"""Tenant boundaries of the REST API: a key limited to namespace A reads nothing of namespace B and
changes nothing of it, through every route of the registry (DESIGN.md §3: another tenant's
resource → 404); organization secrets, API keys and new namespaces are for org-admin keys only.

The routes come from the running registry's OpenAPI document, and every one of them must have a
cross-tenant case here: a new route without one fails ``test_every_route_has_a_cross_tenant_case``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from ._client import Api, small_frames_plugin, text_embed_archive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def tiny_png() -> bytes:
    """A valid 1x1 PNG, built by hand (signature, IHDR, IDAT, IEND)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + (chunk(b"IEND", b""))
    )


def search_stages(feature_uri: str = FEATURE_URI) -> list[dict[str, Any]]:
    return [
        {
            "stage_name": "search",
            "stage_type": "filter",
            "config": {
                "stage_id": "feature_search",
                "parameters": {"searches": [{"feature_uri": feature_uri, "query": "{{INPUT.query}}"}]},
            },
        }
    ]


@dataclass
class Tenants:
    """Namespace A (nearly empty) and namespace B (one of everything), with a key limited to each."""

    a_id: str
    a_name: str
    a_bucket: str
    b_id: str
    b_name: str
    b_bucket: str
    b_bucket_name: str
    b_media: str
    b_object_text: str
    b_plugin: str
    b_plugin_upload: str
    b_archive_sha256: str
    b_collection: str
    b_collection_name: str
    b_retriever: str
    b_retriever_name: str
    b_batch: str
    b_task: str
    b_blob_upload: str
    secret_name: str
    secret_value: str
    key_a: str
    key_a_id: str
    key_b: str
    key_b_id: str
    org_plugin: str  # an organization plugin, enabled in B with B's params
    org_plugin_upload: str
    b_org_param: str
    a: Api = field(repr=False)

    def b_values(self) -> dict[str, tuple[str, ...]]:
        """B's data, each with the strings whose presence in a request makes its echo no leak."""
        plain = [
            self.b_id,
            self.b_name,
            self.b_bucket,
            self.b_bucket_name,
            self.b_media,
            self.b_object_text,
            self.b_plugin_upload,
            self.b_archive_sha256,
            self.b_collection,
            self.b_collection_name,
            self.b_retriever,
            self.b_retriever_name,
            self.b_batch,
            self.b_task,
            self.b_blob_upload,
            self.secret_value,
            self.key_b,
            self.key_b_id,
            self.b_org_param,
        ]
        return {v: (v,) for v in plain}


def _limited_key(api: Api, name: str, ns: str) -> tuple[str, str]:
    made = api.call("POST", "/v1/organizations/api-keys", json={"name": name, "namespaces": [ns]})
    assert made["namespaces"] == [ns] and not made["admin"]
    return made["key"], made["key_id"]


@pytest.fixture(scope="module")
def tenants(platform, api: Api) -> Tenants:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    a_name, b_name = f"tenant-a-{tag}", f"tenant-b-{tag}"
    a_id, b_id = api.namespace(a_name), api.namespace(b_name)

    archive = small_frames_plugin()
    org_up = api.upload_org_plugin("text_embed", "8.0.0", text_embed_archive("8.0.0"))  # no other test's version
    up = api.client.upload_plugin(b_id, archive, "text_embed", "1.0.0")
    plugin_id, plugin_upload = up["plugin_id"], up["upload_id"]
    b_text = f"tenant B private text {tag}"
    bucket_name = f"b-articles-{tag}"
    b_bucket = api.text_bucket(b_id, bucket_name, [b_text, f"second private text {tag}"])
    assert api.wait_scan(b_id, plugin_id)["scan"]["status"] == "passed"
    api.call("POST", f"/v1/namespaces/{b_id}/plugins/{plugin_id}/deploy?deployment_type=batch_only")
    assert api.wait_org_scan(org_up["plugin_id"])["validation_status"] == "passed"
    b_org_param = f"b-org-param-{tag}"
    api.call(
        "POST", f"/v1/namespaces/{b_id}/plugins/org/{org_up['plugin_id']}/enable", json={"params": {"p": b_org_param}}
    )
    collection_name = f"b-col-{tag}"
    collection = api.call(
        "POST",
        f"/v1/namespaces/{b_id}/collections",
        json={
            "name": collection_name,
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
            "source": {"type": "bucket", "bucket_ids": [b_bucket]},
        },
    )["collection_id"]
    batch = api.call(
        "POST", f"/v1/namespaces/{b_id}/buckets/{b_bucket}/batches/trigger", json={"collection_ids": [collection]}
    )
    retriever_name = f"b-search-{tag}"
    retriever = api.call(
        "POST",
        f"/v1/namespaces/{b_id}/retrievers",
        json={"name": retriever_name, "collection_identifiers": [collection], "stages": search_stages()},
    )["retriever_id"]

    media = api.call(
        "POST",
        f"/v1/namespaces/{b_id}/buckets",
        json={"name": f"b-media-{tag}", "bucket_schema": {"properties": {"image": {"type": "image"}}}},
    )["bucket_id"]
    png = tiny_png()
    blob = api.call(
        "POST",
        f"/v1/namespaces/{b_id}/buckets/{media}/uploads",
        json={"filename": "b.png", "content_type": "image/png", "size_bytes": len(png)},
    )
    assert httpx.put(blob["presigned_url"], content=png, timeout=60).status_code == 200
    api.call("POST", f"/v1/namespaces/{b_id}/buckets/{media}/uploads/{blob['upload_id']}/confirm")

    a_bucket = api.call(
        "POST",
        f"/v1/namespaces/{a_id}/buckets",
        json={
            "name": f"a-mixed-{tag}",
            "bucket_schema": {"properties": {"text": {"type": "text"}, "image": {"type": "image"}}},
        },
    )["bucket_id"]
    secret_name, secret_value = f"TENANCY_{tag.upper()}", f"secret-value-{uuid.uuid4().hex}"
    api.call("POST", "/v1/organizations/secrets", json={"secret_name": secret_name, "secret_value": secret_value})
    key_a, key_a_id = _limited_key(api, f"a-{tag}", a_id)
    key_b, key_b_id = _limited_key(api, f"b-{tag}", b_id)
    # B's batch settles before anyone compares B's state; its outcome is not what is tested here.
    api.wait_batch(b_id, b_bucket, batch["batch_id"], timeout=240)
    return Tenants(
        a_id=a_id,
        a_name=a_name,
        a_bucket=a_bucket,
        b_id=b_id,
        b_name=b_name,
        b_bucket=b_bucket,
        b_bucket_name=bucket_name,
        b_media=media,
        b_object_text=b_text,
        b_plugin=plugin_id,
        b_plugin_upload=plugin_upload,
        b_archive_sha256=hashlib.sha256(archive).hexdigest(),
        b_collection=collection,
        b_collection_name=collection_name,
        b_retriever=retriever,
        b_retriever_name=retriever_name,
        b_batch=batch["batch_id"],
        b_task=batch["task_id"],
        b_blob_upload=blob["upload_id"],
        secret_name=secret_name,
        secret_value=secret_value,
        key_a=key_a,
        key_a_id=key_a_id,
        key_b=key_b,
        key_b_id=key_b_id,
        org_plugin=org_up["plugin_id"],
        org_plugin_upload=org_up["upload_id"],
        b_org_param=b_org_param,
        a=Api(platform.base_url, key_a),
    )


@dataclass
class Attempt:
    method: str
    template: str
    path: str
    expect: int
    body: Any = None
    admin_reads_it: bool = False  # the admin key gets a 200 for this very request (so the 404 is tenancy)
    form: dict[str, str] | None = None  # sent as a multipart form with an archive, not as JSON

    def request_text(self) -> str:
        sent = self.form if self.form is not None else self.body
        return self.path + (json.dumps(sent) if sent is not None else "")

    def request_kwargs(self) -> dict[str, Any]:
        if self.form is not None:
            return {"files": {"file": ("p.zip", EMPTY_ZIP, "application/zip")}, "data": self.form}
        return {"json": self.body}


EMPTY_ZIP = b"PK\x05\x06" + b"\x00" * 18


def cross_tenant_attempts(t: Tenants) -> list[Attempt]:
    """Every route, tried with A's key on B's resources: by B's ids, by B's names, and under A's path."""
    out: list[Attempt] = []
    b_forms = [t.b_id, t.b_name]

    def add(
        method: str,
        template: str,
        expect: int,
        body: Any = None,
        query: str = "",
        form: dict[str, str] | None = None,
        **params: str,
    ) -> None:
        path = template.format(**params) + query
        all_b = bool(params) and params.get("ns", t.b_id) in b_forms
        out.append(Attempt(method, template, path, expect, body, method == "GET" and all_b, form))

    text_object = {"blobs": [{"property": "text", "type": "text", "data": "written by A"}]}
    # namespaces
    add("GET", "/v1/namespaces", 200)
    add("POST", "/v1/namespaces", 403, {"namespace_name": f"made-by-a-{uuid.uuid4().hex[:6]}"})
    for ns in b_forms:
        add("GET", "/v1/namespaces/{ns}", 404, ns=ns)
    # organization secrets and API keys: org-admin keys only
    add("GET", "/v1/organizations/secrets", 403)
    add("POST", "/v1/organizations/secrets", 403, {"secret_name": "FROM_A", "secret_value": "x"})
    add("PUT", "/v1/organizations/secrets/{name}", 403, {"secret_value": "overwritten by A"}, name=t.secret_name)
    add("DELETE", "/v1/organizations/secrets/{name}", 403, name=t.secret_name)
    add("GET", "/v1/organizations/api-keys", 403)
    add("POST", "/v1/organizations/api-keys", 403, {"name": "a-into-b", "namespaces": [t.b_id]})
    add("POST", "/v1/organizations/api-keys", 403, {"name": "a-admin", "admin": True})
    add("POST", "/v1/organizations/api-keys/{key_id}/revoke", 403, key_id=t.key_b_id)
    # plugins
    plugins = "/v1/namespaces/{ns}/plugins"
    for ns in b_forms:
        add("POST", plugins + "/uploads", 404, {"name": "text_embed", "version": "9.0.0"}, ns=ns)
        add("POST", plugins, 404, form={"name": "text_embed", "version": "9.0.1"}, ns=ns)
        add("GET", plugins, 404, ns=ns)
    add("GET", plugins, 200, ns=t.a_id)
    for ns in [*b_forms, t.a_id]:
        add("POST", plugins + "/uploads/{upload_id}/confirm", 404, ns=ns, upload_id=t.b_plugin_upload)
        for method, suffix, body in [
            ("GET", "/{plugin_id}", None),
            ("DELETE", "/{plugin_id}", None),
            ("GET", "/{plugin_id}/status", None),
            ("POST", "/{plugin_id}/deploy", None),
            ("POST", "/{plugin_id}/undeploy", None),
            ("POST", "/{plugin_id}/infer", {"inputs": {"text": "from A"}}),
            ("POST", "/org/{plugin_id}/enable", {"params": {"set_by": "A"}}),
            ("POST", "/org/{plugin_id}/disable", None),
            # secret grants: B's plugin's grants are neither read nor changed by A's key
            ("GET", "/{plugin_id}/secrets", None),
            ("PUT", "/{plugin_id}/secrets", {"secret_names": [t.secret_name]}),
            ("PUT", "/{plugin_id}/secrets", {"secret_names": []}),
        ]:
            query = "?deployment_type=batch_only" if suffix == "/{plugin_id}/deploy" else ""
            add(method, plugins + suffix, 404, body, query, ns=ns, plugin_id=t.b_plugin)
        revoke = plugins + "/{plugin_id}/secrets/{secret_name}"
        add("DELETE", revoke, 404, ns=ns, plugin_id=t.b_plugin, secret_name=t.secret_name)
    # organization plugins: every key of the organization reads them, org-admin keys write them; the
    # namespaces that enabled one, and their params, are theirs
    for ns in b_forms:
        add("GET", plugins + "/available", 404, ns=ns)
        for suffix, body in [("enable", {"params": {"set_by": "A"}}), ("disable", None)]:
            add("POST", plugins + "/org/{plugin_id}/" + suffix, 404, body, ns=ns, plugin_id=t.org_plugin)
    add("GET", plugins + "/available", 200, ns=t.a_id)
    add("GET", "/v1/plugins", 200)
    add("GET", "/v1/plugins/{plugin_id}", 200, plugin_id=t.org_plugin)
    # B's namespace plugin is no organization plugin, for the admin either
    out.append(Attempt("GET", "/v1/plugins/{plugin_id}", f"/v1/plugins/{t.b_plugin}", 404))
    add("POST", "/v1/plugins/uploads", 403, {"name": "made_by_a", "version": "1.0.0"})
    add("POST", "/v1/plugins/uploads/{upload_id}/confirm", 403, upload_id=t.org_plugin_upload)
    add("DELETE", "/v1/plugins/{plugin_id}", 403, plugin_id=t.org_plugin)
    # buckets and objects
    buckets = "/v1/namespaces/{ns}/buckets"
    schema = {"properties": {"text": {"type": "text"}}}
    for ns in b_forms:
        add("POST", buckets, 404, {"name": "made-by-a", "bucket_schema": schema}, ns=ns)
        add("GET", buckets, 404, ns=ns)
    add("GET", buckets, 200, ns=t.a_id)
    for ns in [*b_forms, t.a_id]:
        bucket = buckets + "/{bucket_id}"
        add("GET", bucket, 404, ns=ns, bucket_id=t.b_bucket)
        add("POST", bucket + "/objects", 404, text_object, ns=ns, bucket_id=t.b_bucket)
        add("POST", bucket + "/objects/batch", 404, {"objects": [text_object]}, ns=ns, bucket_id=t.b_bucket)
        add("POST", bucket + "/batches/trigger", 404, {"collection_ids": [t.b_collection]}, ns=ns, bucket_id=t.b_bucket)
        for bucket_id in {t.b_bucket, t.a_bucket} if ns == t.a_id else {t.b_bucket}:
            ids = {"ns": ns, "bucket_id": bucket_id, "batch_id": t.b_batch}
            add("GET", bucket + "/batches/{batch_id}", 404, **ids)
            add("GET", bucket + "/batches/{batch_id}/failed-documents", 404, **ids)
            add("POST", bucket + "/batches/{batch_id}/retry", 404, **ids)
        for bucket_id in {t.b_media, t.a_bucket} if ns == t.a_id else {t.b_media}:
            ids = {"ns": ns, "bucket_id": bucket_id, "upload_id": t.b_blob_upload}
            add("GET", bucket + "/uploads/{upload_id}", 404, **ids)
            add("POST", bucket + "/uploads/{upload_id}/confirm", 404, **ids)
        add(
            "POST",
            bucket + "/uploads",
            404,
            {"filename": "a.png", "content_type": "image/png", "size_bytes": 67},
            ns=ns,
            bucket_id=t.b_media,
        )
    # A's own bucket, naming B's things in the body
    a_bucket = {"ns": t.a_id, "bucket_id": t.a_bucket}
    image = {"blobs": [{"property": "image", "type": "image", "upload_id": t.b_blob_upload}]}
    add("POST", buckets + "/{bucket_id}/objects", 422, image, **a_bucket)
    add("POST", buckets + "/{bucket_id}/objects/batch", 422, {"objects": [image]}, **a_bucket)
    add("POST", buckets + "/{bucket_id}/batches/trigger", 404, {"collection_ids": [t.b_collection]}, **a_bucket)
    add("GET", "/v1/tasks/{task_id}", 404, task_id=t.b_task)
    add("DELETE", "/v1/tasks/{task_id}", 404, task_id=t.b_task)  # B's task is not cancelled (see admin_view_of_b)
    add("POST", "/v1/tasks/list", 200, {})  # A's tasks only: B's task and batch ids must not appear
    # collections
    collections = "/v1/namespaces/{ns}/collections"
    new_collection = {
        "name": "made-by-a",
        "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0"}],
        "source": {"type": "bucket", "bucket_ids": [t.b_bucket]},
    }
    for ns in b_forms:
        add("POST", collections, 404, new_collection, ns=ns)
        add("GET", collections, 404, ns=ns)
    add("POST", collections, 422, new_collection, ns=t.a_id)
    add("GET", collections, 200, ns=t.a_id)
    for ns in [*b_forms, t.a_id]:
        for ident in (t.b_collection, t.b_collection_name):
            add("GET", collections + "/{collection}", 404, ns=ns, collection=ident)
            add("DELETE", collections + "/{collection}", 404, ns=ns, collection=ident)
    # retrievers
    retrievers = "/v1/namespaces/{ns}/retrievers"
    new_retriever = {"name": "made-by-a", "collection_identifiers": [t.b_collection], "stages": search_stages()}
    for ns in b_forms:
        add("POST", retrievers, 404, new_retriever, ns=ns)
    for ident in (t.b_collection, t.b_collection_name):
        add("POST", retrievers, 404, {**new_retriever, "collection_identifiers": [ident]}, ns=t.a_id)
    add("POST", retrievers, 422, {"name": "made-by-a", "stages": search_stages()}, ns=t.a_id)  # B's plugin's feature
    for ns in [*b_forms, t.a_id]:
        for ident in (t.b_retriever, t.b_retriever_name):
            add("GET", retrievers + "/{retriever_id}", 404, ns=ns, retriever_id=ident)
            add("GET", retrievers + "/{retriever_id}/executions", 404, ns=ns, retriever_id=ident)
            add("DELETE", retrievers + "/{retriever_id}", 404, ns=ns, retriever_id=ident)
            add(
                "POST",
                retrievers + "/{retriever_id}/execute",
                404,
                {"input": {"query": "x"}},
                ns=ns,
                retriever_id=ident,
            )
    # models: a namespace's are its own; the cluster's are read by every key, written by org-admin keys
    models = "/v1/namespaces/{ns}/models"
    weights = {"name": "from-a_1", "files": [{"path": "model.safetensors", "size_bytes": 16, "sha256": "a" * 64}]}
    for ns in b_forms:
        add("GET", models, 404, ns=ns)
        add("POST", models, 404, weights, ns=ns)
        for method, suffix in [("GET", "/{model_id}"), ("DELETE", "/{model_id}"), ("POST", "/{model_id}/confirm")]:
            path = (models + suffix).format(ns=ns, model_id="mdl_of_b")
            out.append(Attempt(method, models + suffix, path, 404))
    add("GET", "/v1/models", 200)
    add("POST", "/v1/models", 403, {**weights, "name": "acme/from-a"})
    out.append(Attempt("GET", "/v1/models/{model_id}", "/v1/models/mdl_of_b", 404))
    add("DELETE", "/v1/models/{model_id}", 403, model_id="mdl_of_b")
    add("POST", "/v1/models/{model_id}/confirm", 403, model_id="mdl_of_b")
    add("GET", "/healthz", 200)
    return out


def registry_operations(base_url: str) -> set[tuple[str, str]]:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m in HTTP_METHODS}


def admin_view_of_b(api: Api, t: Tenants) -> dict[str, Any]:
    """Everything of B (and what A could have made) as the admin sees it."""
    b, a = f"/v1/namespaces/{t.b_id}", f"/v1/namespaces/{t.a_id}"
    keys = api.call("GET", "/v1/organizations/api-keys")["api_keys"]
    return {
        "namespaces": sorted(n["namespace_id"] for n in api.call("GET", "/v1/namespaces")["results"]),
        "b_namespace": api.call("GET", b),
        "b_buckets": api.call("GET", f"{b}/buckets")["results"],
        "b_plugins": api.call("GET", f"{b}/plugins")["results"],
        "b_plugin_status": api.call("GET", f"{b}/plugins/{t.b_plugin}/status"),
        "b_plugin_secrets": api.call("GET", f"{b}/plugins/{t.b_plugin}/secrets"),
        "b_available": api.call("GET", f"{b}/plugins/available"),
        "org_plugin": api.call("GET", f"/v1/plugins/{t.org_plugin}"),
        "b_collections": api.call("GET", f"{b}/collections")["results"],
        "b_retriever": api.call("GET", f"{b}/retrievers/{t.b_retriever}"),
        "b_batch": api.call("GET", f"{b}/buckets/{t.b_bucket}/batches/{t.b_batch}"),
        "b_task": api.call("GET", f"/v1/tasks/{t.b_task}"),
        "b_blob_upload": api.call("GET", f"{b}/buckets/{t.b_media}/uploads/{t.b_blob_upload}"),
        "a_buckets": api.call("GET", f"{a}/buckets")["results"],
        "a_plugins": api.call("GET", f"{a}/plugins")["results"],
        "a_collections": api.call("GET", f"{a}/collections")["results"],
        "secrets": api.call("GET", "/v1/organizations/secrets")["secrets"],
        # last_used_at moves whenever A's key is used; whether a key exists, is revoked or limited must not
        # (last use and state follow the clock: another test's key may expire meanwhile; revoked is compared)
        "keys": [{k: v for k, v in key.items() if k not in ("last_used_at", "state")} for key in keys],
    }


def test_every_route_has_a_cross_tenant_case(platform, tenants: Tenants) -> None:  # type: ignore[no-untyped-def]
    routes = registry_operations(platform.base_url)
    covered = {(a.method, a.template) for a in cross_tenant_attempts(tenants)}
    assert len(routes) >= 40, sorted(routes)
    assert routes - covered == set(), f"routes without a cross-tenant case: {sorted(routes - covered)}"
    assert covered - routes == set(), f"cases for routes the registry does not have: {sorted(covered - routes)}"


def test_a_key_limited_to_a_reads_and_writes_nothing_of_b(api: Api, tenants: Tenants) -> None:
    t = tenants
    # The keys work for their own namespace, so every 404 below is the boundary, not a broken key.
    assert t.a.call("GET", f"/v1/namespaces/{t.a_id}")["namespace_id"] == t.a_id
    b_key = Api(str(api.http.base_url), t.key_b)
    assert b_key.call("GET", f"/v1/namespaces/{t.b_name}/buckets/{t.b_bucket}")["object_count"] == 2
    before = admin_view_of_b(api, t)
    assert before["b_plugin_status"]["scan"]["status"] == "passed" and before["b_batch"]["status"] != "PENDING"

    attempts = cross_tenant_attempts(t)
    values = t.b_values()
    failures = []
    for attempt in attempts:
        response = t.a.http.request(attempt.method, attempt.path, **attempt.request_kwargs())
        said = response.text
        sent = attempt.request_text()
        leaked = sorted(v for v, aliases in values.items() if v in said and not any(x in sent for x in aliases))
        problem = []
        if response.status_code != attempt.expect:
            problem.append(f"status {response.status_code}, expected {attempt.expect}")
        if leaked:
            problem.append(f"names B's {leaked}")
        if response.status_code >= 400 and "detail" not in response.json():
            problem.append("no detail")
        if attempt.expect == 403 and "org-admin" not in said and "whole organization" not in said:
            problem.append("the 403 does not say an org-wide key is needed")
        if problem:
            failures.append(f"{attempt.method} {attempt.path}: {'; '.join(problem)}: {said[:300]}")
    assert not failures, "\n".join(failures)

    # The admin reads every B resource that A was refused, so the paths above were the right ones.
    controls = [a for a in attempts if a.admin_reads_it]
    assert len(controls) >= 20
    for attempt in controls:
        assert api.http.get(attempt.path).status_code == 200, attempt.path

    after = admin_view_of_b(api, t)
    for part in before:
        assert after[part] == before[part], f"{part} changed after A's attempts"
    assert b_key.call("GET", f"/v1/namespaces/{t.b_id}")["namespace_id"] == t.b_id  # A could not revoke B's key


def test_listings_with_a_key_show_nothing_of_b(api: Api, tenants: Tenants) -> None:
    t = tenants
    names = [n["namespace_name"] for n in t.a.call("GET", "/v1/namespaces")["results"]]
    assert names == [t.a_name]
    assert t.b_name in [n["namespace_name"] for n in api.call("GET", "/v1/namespaces")["results"]]
    assert [b["bucket_id"] for b in t.a.call("GET", f"/v1/namespaces/{t.a_id}/buckets")["results"]] == [t.a_bucket]
    assert t.a.call("GET", f"/v1/namespaces/{t.a_id}/plugins")["results"] == []
    assert t.a.call("GET", f"/v1/namespaces/{t.a_id}/collections")["results"] == []
    assert len(api.call("GET", f"/v1/namespaces/{t.b_id}/collections")["results"]) == 1


def test_a_namespace_named_like_a_keys_namespace_id_is_not_that_keys(api: Api, tenants: Tenants) -> None:
    """A key is limited to namespace ids: another namespace whose *name* is A's id stays out of reach."""
    t = tenants
    twin = api.namespace(t.a_id)
    assert twin != t.a_id
    assert [n["namespace_id"] for n in t.a.call("GET", "/v1/namespaces")["results"]] == [t.a_id]
    assert "namespace_name" not in t.a.call("GET", f"/v1/namespaces/{twin}", expect=404)
    assert t.a.call("GET", f"/v1/namespaces/{t.a_id}")["namespace_id"] == t.a_id  # by id: A itself
    t.a.call("GET", f"/v1/namespaces/{twin}/buckets", expect=404)


def test_only_org_admin_keys_manage_secrets_keys_and_namespaces(api: Api, tenants: Tenants) -> None:
    t = tenants
    name = f"ADMIN_MADE_{uuid.uuid4().hex[:6].upper()}"
    api.call("POST", "/v1/organizations/secrets", json={"secret_name": name, "secret_value": "v1"}, expect=201)
    listed = api.call("GET", "/v1/organizations/secrets")
    assert name in [s["secret_name"] for s in listed["secrets"]] and "v1" not in json.dumps(listed)
    assert t.secret_value not in json.dumps(listed)
    api.call("PUT", f"/v1/organizations/secrets/{name}", json={"secret_value": "v2"})
    api.call("DELETE", f"/v1/organizations/secrets/{name}")
    assert name not in [s["secret_name"] for s in api.call("GET", "/v1/organizations/secrets")["secrets"]]

    made = api.call("POST", "/v1/namespaces", json={"namespace_name": f"admin-made-{uuid.uuid4().hex[:6]}"})
    assert made["namespace_id"].startswith("ns_")
    refused = t.a.call("POST", "/v1/namespaces", json={"namespace_name": "a-made"}, expect=403)
    assert t.key_a_id in refused["detail"]

    task = api.call("GET", f"/v1/tasks/{t.b_task}")
    assert task["batch_id"] == t.b_batch
    b_key = Api(str(api.http.base_url), t.key_b)
    assert b_key.call("GET", f"/v1/tasks/{t.b_task}")["batch_id"] == t.b_batch
    assert t.b_batch not in json.dumps(t.a.call("GET", f"/v1/tasks/{t.b_task}", expect=404))


def _make_key(api: Api, **body: Any) -> dict[str, Any]:
    return api.call("POST", "/v1/organizations/api-keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", **body})


def _listed(api: Api, key_id: str) -> dict[str, Any]:
    return next(k for k in api.call("GET", "/v1/organizations/api-keys")["api_keys"] if k["key_id"] == key_id)


def test_key_listing_shows_a_prefix_never_the_key_or_its_hash(api: Api, tenants: Tenants) -> None:
    made = _make_key(api, namespaces=[tenants.a_id])
    key = made["key"]
    listing = api.http.get("/v1/organizations/api-keys")
    assert listing.status_code == 200
    for secret in (key, tenants.key_a, tenants.key_b, hashlib.sha256(key.encode()).hexdigest()):
        assert secret not in listing.text
    assert "key_hash" not in listing.text
    entry = _listed(api, made["key_id"])
    assert "key" not in entry and 0 < len(entry["prefix"]) <= 10 and key.startswith(entry["prefix"])
    assert entry["state"] == "active" and entry["namespaces"] == [tenants.a_id]


def test_last_used_at_is_set_once_a_key_is_used(api: Api, tenants: Tenants) -> None:
    made = _make_key(api, namespaces=[tenants.a_id])
    assert _listed(api, made["key_id"])["last_used_at"] is None
    Api(str(api.http.base_url), made["key"]).call("GET", f"/v1/namespaces/{tenants.a_id}")
    used = _listed(api, made["key_id"])["last_used_at"]
    assert used is not None and used >= made["created_at"][:19]


def test_a_revoked_key_is_refused_at_once(api: Api, tenants: Tenants) -> None:
    made = _make_key(api, namespaces=[tenants.a_id])
    user = Api(str(api.http.base_url), made["key"])
    user.call("GET", f"/v1/namespaces/{tenants.a_id}")
    revoked = api.call("POST", f"/v1/organizations/api-keys/{made['key_id']}/revoke")
    assert revoked["revoked"] and revoked["state"] == "revoked"
    refused = user.call("GET", f"/v1/namespaces/{tenants.a_id}", expect=401)
    assert "revoked" in refused["detail"] and made["key_id"] in refused["detail"]
    assert _listed(api, made["key_id"])["state"] == "revoked"


def test_expiry_and_the_last_usable_admin_key(platform, api: Api, tenants: Tenants) -> None:  # type: ignore[no-untyped-def]
    admins = [
        k for k in api.call("GET", "/v1/organizations/api-keys")["api_keys"] if k["admin"] and k["state"] == "active"
    ]
    mine = [k for k in admins if platform.admin_key.startswith(k["prefix"]) and k["name"] == "admin"]
    assert len(mine) == 1 and len(admins) == 1, f"another active admin key exists: {admins}"
    admin_id = mine[0]["key_id"]

    short = _make_key(api, namespaces=[tenants.a_id], expires_in_seconds=2)
    short_admin = _make_key(api, admin=True, expires_in_seconds=2)
    spare_admin = _make_key(api, admin=True)
    user = Api(str(api.http.base_url), short["key"])
    user.call("GET", f"/v1/namespaces/{tenants.a_id}")
    # with another usable admin key, the admin key may be revoked; revoke the spare instead
    api.call("POST", f"/v1/organizations/api-keys/{spare_admin['key_id']}/revoke")

    time.sleep(2.5)
    refused = user.call("GET", f"/v1/namespaces/{tenants.a_id}", expect=401)
    assert "expired" in refused["detail"] and short["key_id"] in refused["detail"]
    assert _listed(api, short["key_id"])["state"] == "expired"
    assert (
        "expired" in Api(str(api.http.base_url), short_admin["key"]).call("GET", "/v1/namespaces", expect=401)["detail"]
    )

    # short_admin exists and is not revoked, but expired: the admin key is the last usable one
    last = api.call("POST", f"/v1/organizations/api-keys/{admin_id}/revoke", expect=409)
    assert "last usable admin key" in last["detail"] and "hint" in last
    assert api.call("GET", "/v1/namespaces")["results"]  # still usable
