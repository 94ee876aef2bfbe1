"""The registry's app with no server at all: in-memory tables and object store, FastStream's test broker.

What this proves beyond the use-case tests: the composition root wires routes and Kafka handlers to
the same use cases and tables, errors keep their HTTP shape, and ``build_app`` needs no MongoDB.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from featurebus.common.events import BatchCancelled, PluginScanned, PluginUploaded
from featurebus.common.kafka import Bus
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.registry.auth import DEFAULT_ORG, bootstrap_admin_key
from featurebus.registry.config import RegistrySettings
from featurebus.registry.main import build_app
from featurebus.registry.records import Batch
from featurebus.registry.tables import Tables

PREFIX = "t-reg."


@dataclass
class App:
    http: httpx.AsyncClient
    bus: Bus
    tables: Tables
    store: MemoryObjectStore
    uploaded: list[PluginUploaded]
    cancelled: list[BatchCancelled]


@pytest.fixture
async def app(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[App]:
    overrides = getattr(request, "param", {})  # settings of the test (parametrize with indirect=True)
    settings = RegistrySettings(topic_prefix=PREFIX, data_dir=str(tmp_path), **overrides)
    tables, store = Tables.in_memory(), MemoryObjectStore()
    bus = Bus(settings, client_id="registry")
    fastapi_app = build_app(settings, tables=tables, bus=bus, store=store)  # type: ignore[arg-type]
    bus.publishes("plugin.scanned")  # the tests stand in for the scanner
    await bootstrap_admin_key(tables, "fb_test_admin_key_0123456789abcdef", tmp_path)
    uploaded: list[PluginUploaded] = []

    @bus.broker.subscriber(PREFIX + "plugin.uploaded")
    async def on_uploaded(event: PluginUploaded) -> None:
        uploaded.append(event)

    cancelled: list[BatchCancelled] = []

    @bus.broker.subscriber(PREFIX + "batch.cancelled")
    async def on_cancelled(event: BatchCancelled) -> None:
        cancelled.append(event)

    async with TestKafkaBroker(bus.broker):
        transport = httpx.ASGITransport(app=fastapi_app)
        headers = {"Authorization": "Bearer fb_test_admin_key_0123456789abcdef"}
        async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=headers) as http:
            yield App(http, bus, tables, store, uploaded, cancelled)


async def test_routes_answer_from_the_tables_with_errors_in_one_shape(app: App) -> None:
    created = await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    assert created.status_code == 201, created.text
    assert (await app.http.get("/v1/namespaces/docs")).json()["namespace_id"] == created.json()["namespace_id"]
    listed = (await app.http.get("/v1/namespaces", params={"limit": 1})).json()
    assert (listed["total"], listed["limit"], [n["namespace_name"] for n in listed["results"]]) == (1, 1, ["docs"])
    clash = await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    assert clash.status_code == 409 and clash.json() == {
        "detail": "namespace 'docs' exists",
        "hint": "pick another namespace_name",
    }
    bad = await app.http.post("/v1/namespaces", json={"namespace_name": "no spaces"})
    assert bad.status_code == 422 and "namespace_name" in bad.json()["detail"]
    malformed = await app.http.post(
        "/v1/namespaces", content=b'{"namespace_name": ', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert (await app.http.get("/v1/namespaces/nope")).status_code == 404
    anonymous = await app.http.get("/v1/namespaces", headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "admin-api-key" in anonymous.json()["hint"]


async def test_an_upload_confirmed_over_rest_is_scanned_through_the_kafka_handler(app: App) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    upload = await app.http.post("/v1/namespaces/docs/plugins/uploads", json={"name": "toy", "version": "1.0.0"})
    assert upload.status_code == 201, upload.text
    app.store.put_presigned(upload.json()["presigned_url"], b"PK\x05\x06" + b"\x00" * 18)
    confirmed = await app.http.post(f"/v1/namespaces/docs/plugins/uploads/{upload.json()['upload_id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    (event,) = app.uploaded
    assert (event.plugin_id, event.name, event.version) == ("toy_1_0_0", "toy", "1.0.0")

    await app.bus.publish(
        PluginScanned(
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            plugin_id=event.plugin_id,
            archive_sha256=event.archive_sha256,
            passed=True,
            violations=[],
            manifest=None,
        )
    )
    status = (await app.http.get("/v1/namespaces/docs/plugins/toy_1_0_0/status")).json()
    assert status["status"] == "NOT_DEPLOYED" and status["scan"]["passed"] is True


MIXPEEK = Path(__file__).parents[3] / "tests" / "contract" / "mixpeek-plugins-api.openapi.json"
JSON_TYPES = {"string": str, "boolean": bool, "integer": int, "number": (int, float), "array": list, "object": dict}


def mixpeek_response_problems(path: str, method: str, answer: dict[str, Any]) -> list[str]:
    """What ``answer`` lacks of Mixpeek's published response schema for the operation (required fields, types)."""
    spec = json.loads(MIXPEEK.read_text())
    responses = spec["paths"][path][method]["responses"]
    ref = (responses.get("200") or responses["201"])["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    problems = [f"{name}: missing" for name in schema.get("required", []) if name not in answer]
    for name, prop in schema["properties"].items():
        if name not in answer:
            continue
        kinds = [k["type"] for k in prop.get("anyOf", [prop]) if "type" in k]
        allowed = tuple(JSON_TYPES[k] for k in kinds if k != "null")
        if answer[name] is None and "null" in kinds:
            continue
        if allowed and (
            not isinstance(answer[name], allowed) or (bool not in allowed and isinstance(answer[name], bool))
        ):
            problems.append(f"{name}: {answer[name]!r} is not {kinds}")
    return problems


async def test_plugin_answers_carry_every_field_of_mixpeeks_published_schema(app: App) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    base = "/v1/namespaces/{namespace_id}/plugins"
    upload = (
        await app.http.post("/v1/namespaces/docs/plugins/uploads", json={"name": "toy", "version": "1.0.0"})
    ).json()
    assert mixpeek_response_problems(base + "/uploads", "post", upload) == []
    app.store.put_presigned(upload["presigned_url"], b"PK\x05\x06" + b"\x00" * 18)
    confirmed = (await app.http.post(f"/v1/namespaces/docs/plugins/uploads/{upload['upload_id']}/confirm")).json()
    assert mixpeek_response_problems(base + "/uploads/{upload_id}/confirm", "post", confirmed) == []
    assert (confirmed["success"], confirmed["validation_status"], confirmed["deployment_status"]) == (
        True,
        "pending",
        "QUEUED",
    )
    status = (await app.http.get("/v1/namespaces/docs/plugins/toy_1_0_0/status")).json()
    assert mixpeek_response_problems(base + "/{plugin_id}/status", "get", status) == []
    assert (status["namespace_id"], status["name"], status["version"]) == (upload["namespace_id"], "toy", "1.0.0")
    assert status["deployed"] is False and status["queued_at"] is not None and "scanned" in status["message"]


async def test_tasks_list_answers_mixpeeks_shape_and_refuses_filters_it_cannot_apply(app: App) -> None:
    listed = await app.http.post("/v1/tasks/list", params={"limit": 10}, json={"status": "COMPLETED"})
    assert listed.status_code == 200, listed.text
    assert mixpeek_response_problems("/v1/tasks/list", "post", listed.json()) == []
    assert listed.json()["pagination"] == {"total": 0, "page": 1, "page_size": 10, "total_pages": 0, "offset": 0}
    assert (await app.http.post("/v1/tasks/list")).status_code == 200  # no body: every task
    unknown = await app.http.post("/v1/tasks/list", json={"search": "x"})
    assert unknown.status_code == 422 and "search" in unknown.json()["detail"]
    bad = await app.http.post("/v1/tasks/list", json={"status": "DONE"})
    assert bad.status_code == 422 and "status" in bad.json()["detail"]


async def test_killing_a_task_answers_mixpeeks_shape_and_announces_the_cancel(app: App) -> None:
    namespace_id = (await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})).json()["namespace_id"]
    for n, status in ((1, "IN_PROGRESS"), (2, "COMPLETED")):
        await app.tables.batches.insert(
            Batch(
                id=f"btch_{n}",
                org_id=DEFAULT_ORG,
                namespace_id=namespace_id,
                bucket_id="bkt",
                collection_ids=["col"],
                task_id=f"task_{n}",
                status=status,
            )
        )
    killed = await app.http.delete("/v1/tasks/task_1")
    assert killed.status_code == 200, killed.text
    assert mixpeek_response_problems("/v1/tasks/{task_id}", "delete", killed.json()) == []
    assert (killed.json()["success"], killed.json()["status"], killed.json()["task_id"]) == (True, "CANCELED", "task_1")
    spec = json.loads(MIXPEEK.read_text())
    assert killed.json()["status"] in spec["components"]["schemas"]["TaskStatusEnum"]["enum"]
    task = (await app.http.get("/v1/tasks/task_1")).json()
    assert mixpeek_response_problems("/v1/tasks/{task_id}", "get", task) == []
    assert (task["status"], task["rows_cancelled"]) == ("CANCELED", 0)
    assert [(e.batch_id, e.task_id) for e in app.cancelled] == [("btch_1", "task_1")]

    assert (await app.http.delete("/v1/tasks/task_1")).json()["status"] == "CANCELED"  # idempotent
    finished = await app.http.delete("/v1/tasks/task_2")
    assert finished.status_code == 409 and "retry" in finished.json()["hint"]
    assert (await app.http.delete("/v1/tasks/task_nope")).status_code == 404
    anonymous = await app.http.delete("/v1/tasks/task_1", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    listed = (await app.http.post("/v1/tasks/list", json={"status": "CANCELED"})).json()
    assert [t["task_id"] for t in listed["results"]] == ["task_1"]


def plugin_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.py", "features = []\n")
        archive.writestr("pipeline.py", "def build_steps(extractor_request, **kwargs):\n    return {'steps': []}\n")
    return buffer.getvalue()


async def test_an_archive_sent_as_a_multipart_form_is_uploaded_confirmed_and_scanned_in_one_call(app: App) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    archive = plugin_zip()
    answer = await app.http.post(
        "/v1/namespaces/docs/plugins",
        files={"file": ("toy.zip", archive, "application/zip")},
        data={"name": "toy", "version": "1.0.0", "description": "a toy"},
    )
    assert answer.status_code == 200, answer.text
    uploaded = answer.json()
    assert mixpeek_response_problems("/v1/namespaces/{namespace_id}/plugins", "post", uploaded) == []
    assert (uploaded["plugin_id"], uploaded["validation_status"], uploaded["deployment_status"]) == (
        "toy_1_0_0",
        "pending",
        "not_deployed",
    )
    assert uploaded["feature_uri"] == "mixpeek://toy@1.0.0" and uploaded["description"] == "a toy"
    (event,) = app.uploaded  # scanned as a confirmed upload is
    assert (event.plugin_id, event.archive_sha256) == ("toy_1_0_0", uploaded["archive_sha256"])
    assert await app.store.get_bytes(event.archive_uri) == archive
    again = await app.http.post(  # the same archive again: the stored plugin, as a second confirm answers
        "/v1/namespaces/docs/plugins",
        files={"file": ("toy.zip", archive)},
        data={"name": "toy", "version": "1.0.0"},
    )
    assert again.status_code == 200 and again.json()["plugin_id"] == "toy_1_0_0" and len(app.uploaded) == 1


async def test_a_multipart_upload_names_the_field_that_is_wrong(app: App) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})

    async def refusal(**request: Any) -> tuple[int, str]:
        answer = await app.http.post("/v1/namespaces/docs/plugins", **request)
        return answer.status_code, json.dumps(answer.json())

    zipped = {"file": ("toy.zip", plugin_zip())}
    status, body = await refusal(files=zipped, data={"name": "Not Valid", "version": "1.0.0"})
    assert status == 422 and "name" in body and "pattern" in body
    status, body = await refusal(data={"name": "toy", "version": "1.0.0"})
    assert status == 422 and "file" in body
    status, body = await refusal(files=zipped, data={"name": "toy", "version": "one"})
    assert status == 422 and "version" in body
    tarred = gzip.compress(b"a tar of the plugin")
    status, body = await refusal(files={"file": ("toy.tar.gz", tarred)}, data={"name": "toy", "version": "1.0.0"})
    assert status == 422 and "file: a gzip archive (.tar.gz)" in body and "zip -r" in body
    status, body = await refusal(files={"file": ("toy.zip", b"")}, data={"name": "toy", "version": "1.0.0"})
    assert status == 422 and "file: the archive is empty" in body
    status, body = await refusal(json={"name": "toy", "version": "1.0.0"})  # a JSON body: not an upload
    assert status == 422 and "file" in body
    broken = [  # forms that cannot be parsed: a 4xx saying so, never a 5xx
        ("multipart/form-data", b"--x\r\nno boundary was declared"),
        ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.zip"'),
        ("multipart/form-data; boundary=x", b"\xff\xfe not a form at all"),
    ]
    for content_type, content in broken:
        answer = await app.http.post(
            "/v1/namespaces/docs/plugins", content=content, headers={"Content-Type": content_type}
        )
        assert 400 <= answer.status_code < 500 and answer.json()["detail"], (content_type, answer.text)
    assert app.uploaded == [] and (await app.http.get("/v1/namespaces/docs/plugins")).json()["total"] == 0


@pytest.mark.parametrize("app", [{"max_archive_bytes": 1000}], indirect=True)
async def test_a_multipart_upload_over_the_archive_limit_is_refused_413_declared_or_streamed(app: App) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    boundary = "fbboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\ntoy\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="version"\r\n\r\n1.0.0\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="toy.zip"\r\n\r\n'
    ).encode()
    body = head + b"PK\x03\x04" + b"x" * (2 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the guard counts as it reads
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    for content in (body, chunks()):
        answer = await app.http.post("/v1/namespaces/docs/plugins", content=content, headers=headers)
        assert answer.status_code == 413, answer.text
        assert "FEATUREBUS_MAX_ARCHIVE_BYTES" in answer.json()["hint"]
    small = await app.http.post(  # under the guard's bound, over the archive limit: refused by the upload
        "/v1/namespaces/docs/plugins",
        files={"file": ("toy.zip", b"PK\x03\x04" + b"x" * 2000)},
        data={"name": "toy", "version": "1.0.0"},
    )
    assert small.status_code == 413 and "2004 bytes" in small.json()["detail"]
    assert app.uploaded == []
