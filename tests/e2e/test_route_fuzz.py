"""Bad input to every route of the registry: a bounded, seeded fuzz that must never get a 5xx.

The routes come from the running registry's OpenAPI document; each must have an entry in
``ROUTES`` (a new route without one fails ``test_every_route_is_fuzzed``). Each route gets the same
fixed kinds of bad input — bodies that are not JSON or not UTF-8, JSON of the wrong type or nested
too deep, numbers JSON cannot hold, each field of a good body replaced by a value of the wrong
type, bad offsets and limits, unknown ids in the path — at most ``MAX_CASES`` of them, chosen by a
fixed seed. Every answer must be a 2xx or a 4xx with a ``detail`` (a 422's naming the field or
``body``), over a connection that was not reset.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from ._client import EXAMPLES, Api, zip_plugin

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 8
MAX_CASES = 40
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
FEATURE_URI = "mixpeek://text_embed@1.0.0/text_embed_v1_embedding"
RAW = "__raw_literal__"
LISTING = {
    "/v1/namespaces",
    "/v1/organizations/api-keys",
    "/v1/organizations/secrets",
    "/v1/namespaces/{ns}/plugins",
    "/v1/plugins",
    "/v1/namespaces/{ns}/buckets",
    "/v1/namespaces/{ns}/collections",
    "/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/failed-documents",
}


def _stages() -> list[dict[str, Any]]:
    search = {"feature_uri": FEATURE_URI, "query": "{{INPUT.query}}", "top_k": 5}
    return [
        {"stage_type": "filter", "config": {"stage_id": "feature_search", "parameters": {"searches": [search]}}},
        {"stage_id": "filter", "parameters": {"filters": {"lang": "en"}}},
        {"stage_id": "limit", "parameters": {"limit": 3}},
    ]


_OBJECT = {"object_id": "o1", "metadata": {"k": "v"}, "blobs": [{"property": "text", "type": "text", "data": "hi"}]}
_SEARCH = ("stages", 0, "config", "parameters", "searches", 0)


@dataclass(frozen=True)
class Route:
    """A good body for the route (None: it takes none) and the fields the fuzz replaces in it."""

    body: Any = None
    fields: tuple[tuple[str | int, ...], ...] = ()
    words: tuple[str, ...] = ()  # further names a 422 of this route may give as the place
    destructive: bool = False  # with real ids it would delete: its path ids are always unknown
    # hand-picked values for fields where a crash is likeliest (sent before the seeded sample)
    edges: tuple[tuple[tuple[str | int, ...], Any], ...] = ()
    form: bool = False  # it takes a multipart form (FORM), not JSON: the bad bodies are sent as JSON still


MODEL_FIELDS = (
    ("name",),
    ("files",),
    ("files", 0),
    ("files", 0, "path"),
    ("files", 0, "size_bytes"),
    ("files", 0, "sha256"),
)
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/healthz"): Route(),
    ("GET", "/v1/namespaces"): Route(),
    ("POST", "/v1/namespaces"): Route(
        {"namespace_name": "fuzz-made", "description": "d"}, (("namespace_name",), ("description",), ("name",))
    ),
    ("GET", "/v1/namespaces/{ns}"): Route(),
    ("GET", "/v1/organizations/api-keys"): Route(),
    ("POST", "/v1/organizations/api-keys"): Route(
        {"name": "fz", "namespaces": ["{ns}"], "admin": False, "expires_in_seconds": 60},
        (("name",), ("namespaces",), ("namespaces", 0), ("admin",), ("expires_in_seconds",), ("expires_at",)),
        edges=(
            (("expires_in_seconds",), 2**62),  # past timedelta's range
            (("expires_in_seconds",), 2**63 - 1),
            (("expires_at",), "9999-12-31T23:59:59-14:00"),
            (("expires_at",), "0001-01-01T00:00:00+14:00"),
            (("expires_at",), 1e300),
        ),
    ),
    ("POST", "/v1/organizations/api-keys/{key_id}/revoke"): Route(),
    ("GET", "/v1/organizations/secrets"): Route(),
    ("POST", "/v1/organizations/secrets"): Route(
        {"secret_name": "FUZZ_SECRET", "secret_value": "v"}, (("secret_name",), ("secret_value",), ("name",))
    ),
    ("PUT", "/v1/organizations/secrets/{name}"): Route({"secret_value": "v2"}, (("secret_value",), ("value",))),
    ("DELETE", "/v1/organizations/secrets/{name}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/plugins/uploads"): Route(
        {"name": "fuzz_embed", "version": "1.0.0", "description": "", "file_size_bytes": 100},
        (("name",), ("version",), ("description",), ("file_size_bytes",)),
    ),
    ("POST", "/v1/namespaces/{ns}/plugins/uploads/{upload_id}/confirm"): Route(),
    ("POST", "/v1/namespaces/{ns}/plugins"): Route(words=("file",), form=True),
    ("GET", "/v1/namespaces/{ns}/plugins"): Route(),
    ("GET", "/v1/namespaces/{ns}/plugins/{plugin_id}"): Route(),
    ("DELETE", "/v1/namespaces/{ns}/plugins/{plugin_id}"): Route(destructive=True),
    ("GET", "/v1/namespaces/{ns}/plugins/{plugin_id}/status"): Route(),
    ("GET", "/v1/namespaces/{ns}/plugins/{plugin_id}/secrets"): Route(),
    # text_embed declares no secrets: a good body ends in the 422 naming secret_names[0]
    ("PUT", "/v1/namespaces/{ns}/plugins/{plugin_id}/secrets"): Route(
        {"secret_names": ["FUZZ_GRANT"]}, (("secret_names",), ("secret_names", 0))
    ),
    ("DELETE", "/v1/namespaces/{ns}/plugins/{plugin_id}/secrets/{secret_name}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/plugins/{plugin_id}/deploy"): Route(),
    ("POST", "/v1/namespaces/{ns}/plugins/{plugin_id}/undeploy"): Route(),
    ("POST", "/v1/namespaces/{ns}/plugins/{plugin_id}/infer"): Route(
        {"inputs": {"text": "hello"}, "parameters": {}}, (("inputs",), ("parameters",), ("input",))
    ),
    ("GET", "/v1/namespaces/{ns}/plugins/available"): Route(),
    ("POST", "/v1/namespaces/{ns}/plugins/org/{plugin_id}/enable"): Route(
        {"params": {"k": 1}, "deploy": True},
        (("params",), ("params", "k"), ("deploy",)),
        edges=((("params",), {"$set": {"a.b": 1}, "": 2}), (("params", "k"), {"$where": "1"})),
    ),
    ("POST", "/v1/namespaces/{ns}/plugins/org/{plugin_id}/disable"): Route(),
    ("POST", "/v1/plugins/uploads"): Route(
        {"name": "fuzz_org_embed", "version": "1.0.0", "description": "", "file_size_bytes": 100},
        (("name",), ("version",), ("description",), ("file_size_bytes",)),
    ),
    ("POST", "/v1/plugins/uploads/{upload_id}/confirm"): Route(),
    ("GET", "/v1/plugins"): Route(),
    ("GET", "/v1/plugins/{plugin_id}"): Route(),
    ("DELETE", "/v1/plugins/{plugin_id}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/buckets"): Route(
        {"name": "fz", "bucket_schema": {"properties": {"text": {"type": "text", "required": True}}}},
        (
            ("name",),
            ("bucket_schema",),
            ("bucket_schema", "properties"),
            ("bucket_schema", "properties", "text"),
            ("bucket_schema", "properties", "text", "type"),
            ("bucket_schema", "properties", "text", "required"),
        ),
    ),
    ("GET", "/v1/models"): Route(),
    ("POST", "/v1/models"): Route(
        {"name": "fuzz/tiny", "files": [{"path": "model.safetensors", "size_bytes": 16, "sha256": "a" * 64}]},
        MODEL_FIELDS,
    ),
    ("GET", "/v1/models/{model_id}"): Route(),
    ("DELETE", "/v1/models/{model_id}"): Route(destructive=True),
    ("POST", "/v1/models/{model_id}/confirm"): Route(),
    ("GET", "/v1/namespaces/{ns}/models"): Route(),
    ("POST", "/v1/namespaces/{ns}/models"): Route(
        {"name": "fuzz-weights_1", "files": [{"path": "model.safetensors", "size_bytes": 16, "sha256": "b" * 64}]},
        MODEL_FIELDS,
    ),
    ("GET", "/v1/namespaces/{ns}/models/{model_id}"): Route(),
    ("DELETE", "/v1/namespaces/{ns}/models/{model_id}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/models/{model_id}/confirm"): Route(),
    ("GET", "/v1/namespaces/{ns}/buckets"): Route(),
    ("GET", "/v1/namespaces/{ns}/buckets/{bucket_id}"): Route(),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/objects"): Route(
        _OBJECT,
        (
            ("object_id",),
            ("metadata",),
            ("blobs",),
            ("blobs", 0),
            ("blobs", 0, "property"),
            ("blobs", 0, "type"),
            ("blobs", 0, "data"),
            ("blobs", 0, "upload_id"),
        ),
    ),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/objects/batch"): Route(
        {"objects": [_OBJECT]},
        (
            ("objects",),
            ("objects", 0),
            ("objects", 0, "object_id"),
            ("objects", 0, "blobs"),
            ("objects", 0, "metadata"),
        ),
    ),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/batches/trigger"): Route(
        {"collection_ids": ["col_nope"]}, (("collection_ids",), ("collection_ids", 0))
    ),
    ("GET", "/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}"): Route(),
    ("GET", "/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/failed-documents"): Route(),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/batches/{batch_id}/retry"): Route(),
    ("GET", "/v1/tasks/{task_id}"): Route(),
    ("DELETE", "/v1/tasks/{task_id}"): Route(destructive=True),
    ("POST", "/v1/tasks/list"): Route(
        {"status": "COMPLETED", "task_type": "api_buckets_batches_process"}, (("status",), ("task_type",))
    ),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/uploads"): Route(
        {"filename": "a.png", "content_type": "image/png", "size_bytes": 67, "sha256": "0" * 64},
        (("filename",), ("content_type",), ("size_bytes",), ("sha256",), ("mime_type",)),
        edges=(
            (("content_type",), "image/png; charset=" + "x" * 200),
            (("filename",), "../../" + "\u0000" * 3),
            (("sha256",), "G" * 64),
        ),
    ),
    ("GET", "/v1/namespaces/{ns}/buckets/{bucket_id}/uploads/{upload_id}"): Route(),
    ("POST", "/v1/namespaces/{ns}/buckets/{bucket_id}/uploads/{upload_id}/confirm"): Route(),
    ("POST", "/v1/namespaces/{ns}/collections"): Route(
        {
            "name": "fz",
            "feature_extractors": [{"feature_extractor_name": "text_embed", "version": "1.0.0", "parameters": {}}],
            "source": {"type": "bucket", "bucket_ids": ["{bucket_id}"]},
        },
        (
            ("name",),
            ("feature_extractors",),
            ("feature_extractors", 0),
            ("feature_extractors", 0, "feature_extractor_name"),
            ("feature_extractors", 0, "version"),
            ("feature_extractors", 0, "parameters"),
            ("source",),
            ("source", "type"),
            ("source", "bucket_ids"),
            ("source", "bucket_ids", 0),
        ),
    ),
    ("GET", "/v1/namespaces/{ns}/collections"): Route(),
    ("GET", "/v1/namespaces/{ns}/collections/{collection}"): Route(),
    ("DELETE", "/v1/namespaces/{ns}/collections/{collection}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/retrievers"): Route(
        {"name": "fz", "stages": _stages()},
        (
            ("name",),
            ("collection_identifiers",),
            ("collection_ids",),
            ("stages",),
            ("stages", 0),
            ("stages", 0, "config"),
            ("stages", 0, "config", "stage_id"),
            ("stages", 0, "config", "parameters"),
            ("stages", 0, "config", "parameters", "searches"),
            _SEARCH,
            (*_SEARCH, "feature_uri"),
            (*_SEARCH, "query"),
            (*_SEARCH, "top_k"),
            ("stages", 0, "config", "parameters", "final_top_k"),
            ("stages", 1, "parameters", "filters"),
            ("stages", 1, "parameters", "filters", "lang"),
            ("stages", 2, "parameters", "limit"),
        ),
        edges=(
            ((*_SEARCH, "feature_uri"), "mixpeek://text_embed@1." + "9" * 5000 + "/f"),
            ((*_SEARCH, "feature_uri"), "featurebus://text_embed@v99999999999999999999/text_embed_v1_embedding"),
            ((*_SEARCH, "top_k"), 1e300),
            (("stages", 1, "parameters", "filters", "lang"), [[], {}]),
        ),
    ),
    ("GET", "/v1/namespaces/{ns}/retrievers/{retriever_id}"): Route(),
    ("GET", "/v1/namespaces/{ns}/retrievers/{retriever_id}/executions"): Route(),
    ("DELETE", "/v1/namespaces/{ns}/retrievers/{retriever_id}"): Route(destructive=True),
    ("POST", "/v1/namespaces/{ns}/retrievers/{retriever_id}/execute"): Route(
        {"input": {"query": "hello"}, "limit": 5},
        (("input",), ("inputs",), ("input", "query"), ("limit",)),
        edges=(
            (("limit",), 1e300),
            (("input", "query"), {"text": {"nested": 1}}),
            (("input", "query"), "{{INPUT.query}}"),
        ),
        # the fuzz retriever searches a feature no collection has: a good body ends in this 422
        words=("feature_uri", "stages"),
    ),
}

SCHEMA = {"properties": {"text": {"type": "text"}, "image": {"type": "image"}}}
_DEEP = 200
GENERIC_BODIES: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"name": '),
    ("not UTF-8", b'\xff\xfe{"name": "\xe9t\xe9"}'),
    ("an empty list", b"[]"),
    ("a list of scalars", b'[1, "x", null]'),
    ("a string", b'"just a string"'),
    ("a number", b"42"),
    ("null", b"null"),
    ("an empty object", b"{}"),
    (f"lists {_DEEP} deep", b"[" * _DEEP + b"]" * _DEEP),
    (f"objects {_DEEP} deep", b'{"a":' * _DEEP + b"1" + b"}" * _DEEP),
    ("NaN", b'{"name": NaN}'),
    ("Infinity", b'{"name": -Infinity}'),
    ("1e999", b'{"name": 1e999}'),
    ("a 31-digit integer", b'{"name": 1000000000000000000000000000000}'),
    ("a 5000-digit integer", b'{"name": ' + b"9" * 5000 + b"}"),
    ("a lone surrogate", b'{"name": "\\ud800"}'),
    ("a NUL in a key", b'{"na\\u0000me": 1}'),
]
WRONG_VALUES: list[tuple[str, Any]] = [
    ("an object", {"$gt": "", "nested": {"a": [1]}}),
    ("a list of non-objects", [1, "x", None, [], True]),
    ("a word", "not-a-number"),
    ("a float", 1.5),
    ("-1", -1),
    ("0", 0),
    ("2**63-1", 2**63 - 1),
    ("null", None),
    ("true", True),
    ("100,000 characters", "x" * 100_000),
    ("NaN", (RAW, "NaN")),
    ("Infinity", (RAW, "Infinity")),
    ("1e999", (RAW, "1e999")),
    ("10**30", (RAW, str(10**30))),
]
QUERIES: list[tuple[str, str]] = [
    ("offset and limit -1", "offset=-1&limit=-1"),
    ("limit a word, offset 1e999", "limit=abc&offset=1e999"),
    ("huge offset, NaN limit", f"offset={10**30}&limit=NaN"),
    ("long deployment_type", "deployment_type=" + "x" * 5000 + "&offset=1.5"),
]
UNKNOWN_IDS: list[tuple[str, str]] = [
    ("an unknown id", "nope_0000"),
    ("3000 characters", "x" * 3000),
    ("escapes of bad bytes", "%ff%00%ED%A0%80"),
    ("a Mongo operator", "$where"),
]


@dataclass
class Case:
    label: str
    method: str
    template: str
    path: str
    content: bytes | None
    fields: tuple[str, ...]  # a 422 must name one of these (or "body")
    expect: int | None = None
    content_type: str = "application/json"


# A good multipart body (an upload of a plugin archive that its scan will refuse).
_FORM_BOUNDARY = "fuzzform"
FORM = (
    f'--{_FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nfuzz_form\r\n'
    f'--{_FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
    f'--{_FORM_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f.zip"\r\n\r\n'
    f"PK\x05\x06{chr(0) * 18}\r\n--{_FORM_BOUNDARY}--\r\n"
).encode()
FORM_TYPE = f"multipart/form-data; boundary={_FORM_BOUNDARY}"


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _encode(doc: Any) -> bytes:
    text = json.dumps(doc)
    if isinstance(doc, dict):  # a raw literal (NaN, 1e999, ...) sits where its marker is
        text = re.sub(rf'\["{RAW}", "([^"]+)"\]', r"\1", text)
    return text.encode()


def _fill(value: Any, real: dict[str, str]) -> Any:
    return json.loads(json.dumps(value).replace("{ns}", real["ns"]).replace("{bucket_id}", real["bucket_id"]))


def _names(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {n for v in value.values() for n in _names(v)}
    if isinstance(value, list):
        return {n for v in value for n in _names(v)}
    return set()


def cases_for(method: str, template: str, route: Route, real: dict[str, str]) -> list[Case]:
    rng = random.Random(SEED * 1_000_003 + zlib.crc32(f"{method} {template}".encode()))
    params = re.findall(r"{(\w+)}", template)
    ids = {p: real[p] for p in params}
    if route.destructive:
        ids[params[-1]] = "nope_0000"
    path = template.format(**ids)
    body = _fill(route.body, real) if route.body is not None else None
    # a 422 names a field of the body, the body, or the path item it is about ("upload upl_...: ...")
    items = (*params, *(p.removesuffix("_id") for p in params))
    words = ("body", *_names(route.body), *(str(p) for f in route.fields for p in f), *route.words, *items)
    good = _encode(body) if body is not None else None
    # the generic bad bodies put their bad value in a field "name"
    out = [Case(f"body: {label}", method, template, path, raw, (*words, "name")) for label, raw in GENERIC_BODIES]
    for label, query in QUERIES:
        expect = 422 if method == "GET" and template in LISTING and "offset=-1" in query else None
        fields = ("offset", "limit", "deployment_type", *words)
        out.append(Case(f"query: {label}", method, template, f"{path}?{query}", good, fields, expect))
    for label, bad in UNKNOWN_IDS[: 4 if params else 0]:
        wrong = template.format(**{**ids, params[-1]: bad})
        if route.form:
            out.append(Case(f"path: {params[-1]} is {label}", method, template, wrong, FORM, words, 404, FORM_TYPE))
        else:
            out.append(Case(f"path: {params[-1]} is {label}", method, template, wrong, good, words, 404))
    for field, value in route.edges:
        shown = ".".join(str(p) for p in field)
        out.append(
            Case(f"{shown} is {str(value)[:40]}", method, template, path, _encode(_set(body, field, value)), words)
        )
    mutations = [(f, label, value) for f in route.fields for label, value in WRONG_VALUES]
    rng.shuffle(mutations)
    for field, label, value in mutations[: MAX_CASES - len(out)]:
        shown = ".".join(str(p) for p in field)
        mutated = _set(body, field, value)
        out.append(Case(f"{shown} is {label}", method, template, path, _encode(mutated), words))
    return out


def registry_operations(base_url: str) -> dict[tuple[str, str], dict[str, Any]]:
    spec = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    return {(m.upper(), p): op for p, item in spec["paths"].items() for m, op in item.items() if m in HTTP_METHODS}


@pytest.fixture(scope="module")
def real_ids(api: Api) -> dict[str, str]:
    """A namespace with one of each thing a path can name (batches, collections and tasks: none)."""
    tag = uuid.uuid4().hex[:6]
    ns = api.namespace(f"fuzz-{tag}")
    archive = zip_plugin(EXAMPLES / "text_embed")
    up = api.client.upload_plugin(ns, archive, "text_embed", "1.0.0")
    bucket = api.call("POST", f"/v1/namespaces/{ns}/buckets", json={"name": "fz", "bucket_schema": SCHEMA})
    blob = api.call(
        "POST",
        f"/v1/namespaces/{ns}/buckets/{bucket['bucket_id']}/uploads",
        json={"filename": "a.png", "content_type": "image/png", "size_bytes": 67},
    )
    assert api.wait_scan(ns, up["plugin_id"])["scan"]["status"] == "passed"
    retriever = api.call("POST", f"/v1/namespaces/{ns}/retrievers", json={"name": "fz", "stages": _stages()})
    key = api.call("POST", "/v1/organizations/api-keys", json={"name": f"fuzz-{tag}", "namespaces": [ns]})
    secret = f"FUZZ_{tag.upper()}"
    api.call("POST", "/v1/organizations/secrets", json={"secret_name": secret, "secret_value": "s"})
    return {
        "ns": ns,
        "bucket_id": bucket["bucket_id"],
        "plugin_id": up["plugin_id"],
        "plugin_upload_id": up["upload_id"],
        "blob_upload_id": blob["upload_id"],
        "retriever_id": retriever["retriever_id"],
        "key_id": key["key_id"],
        "name": secret,
        "secret_name": secret,
        "batch_id": "btch_nope",
        "task_id": "task_nope",
        "collection": "col_nope",
        "model_id": "mdl_nope",
    }


def _ids_for(template: str, real: dict[str, str]) -> dict[str, str]:
    upload = real["plugin_upload_id"] if "/plugins/" in template else real["blob_upload_id"]
    return {**real, "upload_id": upload}


def test_every_route_is_fuzzed(platform) -> None:  # type: ignore[no-untyped-def]
    routes = set(registry_operations(platform.base_url))
    assert len(routes) >= 40
    assert routes - set(ROUTES) == set(), f"routes the fuzz does not know: {sorted(routes - set(ROUTES))}"
    assert set(ROUTES) - routes == set(), f"fuzz entries for no route: {sorted(set(ROUTES) - routes)}"


def test_listing_routes_take_offset_and_limit(platform, api: Api, real_ids) -> None:  # type: ignore[no-untyped-def]
    operations = registry_operations(platform.base_url)
    for template in LISTING:
        names = {p["name"] for p in operations["GET", template].get("parameters", []) if p["in"] == "query"}
        assert {"offset", "limit"} <= names, template
    api.call("POST", f"/v1/namespaces/{real_ids['ns']}/buckets", json={"name": "second", "bucket_schema": SCHEMA})
    path = f"/v1/namespaces/{real_ids['ns']}/buckets"
    every = api.call("GET", path)
    assert every["total"] == len(every["results"]) >= 2 and (every["offset"], every["limit"]) == (0, 100)
    pages = [api.call("GET", f"{path}?offset={i}&limit=1")["results"] for i in range(every["total"])]
    assert [p[0]["bucket_id"] for p in pages] == [b["bucket_id"] for b in every["results"]]
    assert api.call("GET", f"{path}?offset={every['total']}")["results"] == []
    too_far = api.call("GET", f"{path}?offset=-1", expect=422)
    assert "offset" in too_far["detail"] and "greater than or equal to 0" in too_far["detail"]
    assert "limit" in api.call("GET", f"{path}?limit=1001", expect=422)["detail"]


def test_bad_input_to_every_route_gets_a_4xx_naming_the_place(platform, api: Api, real_ids) -> None:  # type: ignore[no-untyped-def]
    began = time.monotonic()
    http = httpx.Client(
        base_url=platform.base_url,
        headers={"Authorization": f"Bearer {platform.admin_key}", "Content-Type": "application/json"},
        timeout=60,
    )
    failures: list[str] = []
    counts: dict[tuple[str, str], int] = {}
    statuses: dict[int, int] = {}
    for (method, template), route in ROUTES.items():
        cases = cases_for(method, template, route, _ids_for(template, real_ids))
        counts[method, template] = len(cases)
        for case in cases:
            where = f"{case.method} {case.template} [{case.label}]"
            try:
                headers = {"Content-Type": case.content_type}
                response = http.request(case.method, case.path, content=case.content, headers=headers)
            except httpx.TransportError as exc:
                failures.append(f"{where}: the connection failed: {exc!r}")
                continue
            status = response.status_code
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                failures.append(f"{where}: {status} {response.text[:200]}")
                continue
            if case.expect is not None and status != case.expect:
                failures.append(f"{where}: {status}, expected {case.expect}: {response.text[:200]}")
            if status < 400:
                continue
            try:
                detail = response.json()["detail"]
            except (ValueError, KeyError, TypeError):
                failures.append(f"{where}: {status} without a JSON detail: {response.text[:200]}")
                continue
            if status == 422 and not any(word in str(detail) for word in case.fields):
                failures.append(f"{where}: the 422 names none of {sorted(set(case.fields))}: {detail!s:.200}")
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:60])
    assert all(10 <= n <= MAX_CASES for n in counts.values()), counts
    assert sum(statuses.get(s, 0) for s in (400, 404, 409, 413, 422)) > 0.8 * sum(statuses.values()), statuses
    assert http.get("/healthz").json()["status"] == "ok"
    assert api.call("GET", f"/v1/namespaces/{real_ids['ns']}")["namespace_id"] == real_ids["ns"]
    print(
        f"fuzz: {sum(counts.values())} cases over {len(counts)} routes in {time.monotonic() - began:.1f}s; {statuses}"
    )


def test_a_body_over_the_limit_is_a_413_and_the_registry_carries_on(platform, api: Api, real_ids) -> None:  # type: ignore[no-untyped-def]
    limit = 16 * 1024 * 1024
    body = b'{"blobs": [{"property": "text", "type": "text", "data": "' + b"x" * (limit + 1024 * 1024) + b'"}]}'
    response = httpx.post(
        f"{platform.base_url}/v1/namespaces/{real_ids['ns']}/buckets/{real_ids['bucket_id']}/objects",
        content=body,
        headers={"Authorization": f"Bearer {platform.admin_key}", "Content-Type": "application/json"},
        timeout=120,
    )
    assert response.status_code == 413, response.text[:300]
    assert str(limit) in response.json()["detail"] and "presigned_url" in response.json()["hint"]
    assert httpx.get(f"{platform.base_url}/healthz", timeout=30).json()["status"] == "ok"
    assert api.call("GET", f"/v1/namespaces/{real_ids['ns']}/buckets/{real_ids['bucket_id']}")["object_count"] >= 0
