"""The organization plugin routes through the whole app on twins (as ``test_registry_app.py``): their
answers carry Mixpeek's published fields, ``/available`` is not taken for a plugin id, the scan's
round trip goes through the Kafka handler, and org-level writes need an org-admin key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from test_registry_app import JSON_TYPES, MIXPEEK, mixpeek_response_problems

from featurebus.common.events import FeatureSpec, PluginManifest, PluginScanned, PluginUploaded
from featurebus.common.kafka import Bus
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.registry.auth import bootstrap_admin_key
from featurebus.registry.config import RegistrySettings
from featurebus.registry.main import build_app
from featurebus.registry.tables import Tables

PREFIX = "t-orgp."
ADMIN_KEY = "fb_test_admin_key_0123456789abcdef"
ZIP = b"PK\x05\x06" + b"\x00" * 18


@dataclass
class OrgApp:
    http: httpx.AsyncClient
    bus: Bus
    store: MemoryObjectStore
    uploaded: list[PluginUploaded]


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[OrgApp]:
    settings = RegistrySettings(topic_prefix=PREFIX, data_dir=str(tmp_path))
    tables, store = Tables.in_memory(), MemoryObjectStore()
    bus = Bus(settings, client_id="registry")
    fastapi_app = build_app(settings, tables=tables, bus=bus, store=store)  # type: ignore[arg-type]
    bus.publishes("plugin.scanned")  # the test stands in for the scanner
    await bootstrap_admin_key(tables, ADMIN_KEY, tmp_path)
    uploaded: list[PluginUploaded] = []

    @bus.broker.subscriber(PREFIX + "plugin.uploaded")
    async def on_uploaded(event: PluginUploaded) -> None:
        uploaded.append(event)

    async with TestKafkaBroker(bus.broker):
        transport = httpx.ASGITransport(app=fastapi_app)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://registry", headers=headers) as http:
            yield OrgApp(http, bus, store, uploaded)


def schema_problems(name: str, answer: dict[str, Any]) -> list[str]:
    """What ``answer`` lacks of Mixpeek's component schema ``name`` (required fields, types)."""
    schema = json.loads(MIXPEEK.read_text())["components"]["schemas"][name]
    problems = [f"{field}: missing" for field in schema.get("required", []) if field not in answer]
    for field, prop in schema["properties"].items():
        kinds = [k["type"] for k in prop.get("anyOf", [prop]) if "type" in k]
        if field not in answer or (answer[field] is None and "null" in kinds):
            continue
        allowed = tuple(JSON_TYPES[k] for k in kinds if k != "null")
        if allowed and not isinstance(answer[field], allowed):
            problems.append(f"{field}: {answer[field]!r} is not {kinds}")
        if "enum" in prop and answer[field] not in prop["enum"]:
            problems.append(f"{field}: {answer[field]!r} is not one of {prop['enum']}")
    return problems


async def scanned_org_plugin(app: OrgApp) -> dict[str, Any]:
    """toy 1.0.0 uploaded to the organization and passed by the scan (over Kafka); the confirm's answer."""
    upload = await app.http.post("/v1/plugins/uploads", json={"name": "toy", "version": "1.0.0"})
    assert upload.status_code == 201, upload.text
    assert mixpeek_response_problems("/v1/plugins/uploads", "post", upload.json()) == []
    app.store.put_presigned(upload.json()["presigned_url"], ZIP)
    confirmed = await app.http.post(f"/v1/plugins/uploads/{upload.json()['upload_id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert mixpeek_response_problems("/v1/plugins/uploads/{upload_id}/confirm", "post", confirmed.json()) == []
    assert schema_problems("ConfirmPluginUploadResponse", confirmed.json()) == []
    (event,) = app.uploaded
    manifest = PluginManifest(
        feature_extractor_name="toy", version="1.0.0", features=[FeatureSpec(feature_name="toy_v", embedding_dim=4)]
    )
    await app.bus.publish(
        PluginScanned(
            org_id=event.org_id,
            namespace_id=event.namespace_id,
            plugin_id=event.plugin_id,
            archive_sha256=event.archive_sha256,
            passed=True,
            manifest=manifest,
        )
    )
    return dict(confirmed.json())


async def test_org_plugin_answers_carry_mixpeeks_published_fields(app: OrgApp) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    confirmed = await scanned_org_plugin(app)
    assert (confirmed["plugin_id"], confirmed["validation_status"], confirmed["deployment_status"]) == (
        "toy_1_0_0",
        "pending",
        "not_deployed",
    )
    listed = (await app.http.get("/v1/plugins")).json()
    assert mixpeek_response_problems("/v1/plugins", "get", listed) == []
    assert [schema_problems("PluginListItem", item) for item in listed["plugins"]] == [[]]
    detail = (await app.http.get("/v1/plugins/toy_1_0_0")).json()
    assert mixpeek_response_problems("/v1/plugins/{plugin_id}", "get", detail) == []
    assert schema_problems("api__plugins__models__PluginDocument", detail["plugin"]) == []
    assert schema_problems("api__plugins__models__PluginManifestMetadata", detail["plugin"]["manifest"]) == []
    assert (detail["plugin"]["validation_status"], detail["plugin"]["feature_uri"]) == (
        "passed",
        "mixpeek://toy@1.0.0/toy_v",
    )

    base = "/v1/namespaces/{namespace_id}/plugins"
    available = (await app.http.get("/v1/namespaces/docs/plugins/available")).json()
    assert mixpeek_response_problems(base + "/available", "get", available) == []
    [item] = available["plugins"]
    assert schema_problems("AvailableOrgPluginItem", item) == []
    assert (item["enabled_in_namespace"], item["params"]) == (False, {})
    enabled = await app.http.post("/v1/namespaces/docs/plugins/org/toy_1_0_0/enable", json={"params": {"k": 1}})
    assert enabled.status_code == 200, enabled.text
    assert mixpeek_response_problems(base + "/org/{plugin_id}/enable", "post", enabled.json()) == []
    assert schema_problems("EnableOrgPluginResponse", enabled.json()) == []
    assert (enabled.json()["deployment_status"], enabled.json()["scope"], enabled.json()["params"]) == (
        "deployed",
        "organization",
        {"k": 1},
    )
    [item] = (await app.http.get("/v1/namespaces/docs/plugins/available")).json()["plugins"]
    assert (item["enabled_in_namespace"], item["params"]) == (True, {"k": 1})
    assert (await app.http.post("/v1/namespaces/docs/plugins/org/toy_1_0_0/enable")).status_code == 200  # no body
    disabled = await app.http.post("/v1/namespaces/docs/plugins/org/toy_1_0_0/disable")
    assert mixpeek_response_problems(base + "/org/{plugin_id}/disable", "post", disabled.json()) == []
    assert disabled.json()["enabled"] is False
    deleted = await app.http.delete("/v1/plugins/toy_1_0_0")
    assert deleted.status_code == 200, deleted.text
    assert mixpeek_response_problems("/v1/plugins/{plugin_id}", "delete", deleted.json()) == []
    assert (await app.http.get("/v1/plugins/toy_1_0_0")).status_code == 404


async def test_org_writes_need_an_admin_key_and_a_used_plugin_is_not_deleted(app: OrgApp) -> None:
    await app.http.post("/v1/namespaces", json={"namespace_name": "docs"})
    await scanned_org_plugin(app)
    await app.http.post("/v1/namespaces/docs/plugins/org/toy_1_0_0/enable", json={"params": {}})
    refused = await app.http.delete("/v1/plugins/toy_1_0_0")
    assert refused.status_code == 409 and "enabled in namespaces ['docs']" in refused.json()["detail"]
    assert "/disable" in refused.json()["hint"]

    member = (await app.http.post("/v1/organizations/api-keys", json={"name": "member"})).json()["key"]
    as_member = {"Authorization": f"Bearer {member}"}
    for method, path in [("POST", "/v1/plugins/uploads"), ("DELETE", "/v1/plugins/toy_1_0_0")]:
        answer = await app.http.request(method, path, json={"name": "x_y", "version": "1.0.0"}, headers=as_member)
        assert answer.status_code == 403 and "org-admin" in answer.json()["detail"], answer.text
    assert (await app.http.get("/v1/plugins", headers=as_member)).json()["total"] == 1
    # a namespace plugin answers the same enable route, as before
    upload = (await app.http.post("/v1/namespaces/docs/plugins/uploads", json={"name": "own", "version": "1"})).json()
    app.store.put_presigned(upload["presigned_url"], ZIP)
    await app.http.post(f"/v1/namespaces/docs/plugins/uploads/{upload['upload_id']}/confirm")
    own = await app.http.post("/v1/namespaces/docs/plugins/org/own_1_0_0/disable", headers=as_member)
    assert (own.status_code, own.json()["scope"], own.json()["enabled"]) == (200, "namespace", False)
