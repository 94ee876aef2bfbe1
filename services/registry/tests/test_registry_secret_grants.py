"""Per-plugin secret grants: the REST routes (org-admin writes, tenancy, 422s naming the field and
the fix), the internal secrets API inference calls (service token, only granted secrets that still
exist, decrypted, on a listener of its own), and grants that go with their plugin."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from registry_collection_samples import plugin
from registry_twins import ADMIN, Twins, twins

from featurebus.common.events import PluginManifest, PluginScanned
from featurebus.common.kafka import Bus
from featurebus.common.objectstore_memory import MemoryObjectStore
from featurebus.common.queries import SECRETS_PATH
from featurebus.registry.auth import bootstrap_admin_key
from featurebus.registry.config import RegistrySettings
from featurebus.registry.errors import Internal, NotFound
from featurebus.registry.key_rules import Principal
from featurebus.registry.main import build_app
from featurebus.registry.records import Namespace, Plugin, Secret
from featurebus.registry.tables import Tables
from featurebus.registry.usecases import org_plugins, plugins, secret_grants, secrets

PREFIX = "t-grants."
ADMIN_KEY = "fb_test_admin_key_0123456789abcdef"
TOKEN = "internal-token-for-tests"
PLUGIN = "toy_1_0_0"
GRANTS = f"/v1/namespaces/docs/plugins/{PLUGIN}/secrets"
DECLARED = ["API_TOKEN", "OTHER_TOKEN", "NOT_IN_ORG"]


@dataclass
class App:
    http: httpx.AsyncClient  # the public REST app, as the admin
    internal: httpx.AsyncClient  # the internal secrets API, with the service token
    bus: Bus
    tables: Tables
    store: MemoryObjectStore

    async def key(self, **body: Any) -> dict[str, str]:
        made = await self.http.post("/v1/organizations/api-keys", json={"name": "k", **body})
        assert made.status_code == 201, made.text
        return {"Authorization": f"Bearer {made.json()['key']}"}

    async def upload(self, scanned: PluginManifest | None) -> None:
        """toy 1.0.0 into docs; its scan passed with ``scanned`` (None: still scanning)."""
        up = await self.http.post("/v1/namespaces/docs/plugins/uploads", json={"name": "toy", "version": "1.0.0"})
        assert up.status_code == 201, up.text
        self.store.put_presigned(up.json()["presigned_url"], b"PK\x05\x06" + b"\x00" * 18)
        confirmed = await self.http.post(f"/v1/namespaces/docs/plugins/uploads/{up.json()['upload_id']}/confirm")
        assert confirmed.status_code == 200, confirmed.text
        if scanned is None:
            return
        p = confirmed.json()
        org_id = (await self.http.get("/v1/namespaces/docs")).json()["org_id"]
        await self.bus.publish(
            PluginScanned(
                org_id=org_id,
                namespace_id=p["namespace_id"],
                plugin_id=PLUGIN,
                archive_sha256=p["archive_sha256"],
                passed=True,
                manifest=scanned,
            )
        )
        assert (await self.http.get(f"/v1/namespaces/docs/plugins/{PLUGIN}/status")).json()["scan"]["passed"]

    async def secret(self, name: str, value: str) -> None:
        made = await self.http.post("/v1/organizations/secrets", json={"secret_name": name, "secret_value": value})
        assert made.status_code == 201, made.text

    async def granted_values(self, namespace_id: str, plugin_id: str = PLUGIN) -> httpx.Response:
        return await self.internal.post(SECRETS_PATH, json={"namespace_id": namespace_id, "plugin_id": plugin_id})


def manifest(*secret_names: str) -> PluginManifest:
    return PluginManifest(feature_extractor_name="toy", version="1.0.0", secrets=list(secret_names))


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    settings = RegistrySettings(topic_prefix=PREFIX, data_dir=str(tmp_path), internal_token=TOKEN)
    tables, store = Tables.in_memory(), MemoryObjectStore()
    bus = Bus(settings, client_id="registry")
    public = build_app(settings, tables=tables, bus=bus, store=store)  # type: ignore[arg-type]
    bus.publishes("plugin.scanned")  # the tests stand in for the scanner
    await bootstrap_admin_key(tables, ADMIN_KEY, tmp_path)
    async with TestKafkaBroker(bus.broker):
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        service = {"Authorization": f"Bearer {TOKEN}"}
        public_transport = httpx.ASGITransport(app=public)
        internal_transport = httpx.ASGITransport(app=public.state.internal_api)
        async with (
            httpx.AsyncClient(transport=public_transport, base_url="http://registry", headers=admin) as http,
            httpx.AsyncClient(transport=internal_transport, base_url="http://internal", headers=service) as internal,
        ):
            assert (await http.post("/v1/namespaces", json={"namespace_name": "docs"})).status_code == 201
            yield App(http, internal, bus, tables, store)


async def docs_id(app: App) -> str:
    return str((await app.http.get("/v1/namespaces/docs")).json()["namespace_id"])


async def test_an_admin_grants_lists_and_revokes_and_the_internal_api_gives_only_those(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "tok-value")
    await app.secret("OTHER_TOKEN", "other-value")
    await app.secret("UNDECLARED", "never-given")
    ns = await docs_id(app)

    listed = await app.http.get(GRANTS)
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"plugin_id": PLUGIN, "namespace_id": ns, "declared": DECLARED, "granted": []}
    assert (await app.granted_values(ns)).json() == {"secrets": {}}

    granted = await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN", "OTHER_TOKEN", "API_TOKEN"]})
    assert granted.status_code == 200, granted.text
    assert granted.json()["granted"] == ["API_TOKEN", "OTHER_TOKEN"]
    assert (await app.http.get(GRANTS)).json()["granted"] == ["API_TOKEN", "OTHER_TOKEN"]
    answer = await app.granted_values(ns)
    assert answer.status_code == 200 and answer.json() == {
        "secrets": {"API_TOKEN": "tok-value", "OTHER_TOKEN": "other-value"}
    }
    # the values never appear on the public API
    assert "tok-value" not in (await app.http.get(GRANTS)).text

    revoked = await app.http.delete(f"{GRANTS}/OTHER_TOKEN")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {
        "plugin_id": PLUGIN,
        "namespace_id": ns,
        "declared": DECLARED,
        "granted": ["API_TOKEN"],
        "deleted": True,
        "secret_name": "OTHER_TOKEN",
    }
    again = await app.http.delete(f"{GRANTS}/OTHER_TOKEN")
    assert again.status_code == 404 and "not granted" in again.json()["detail"] and "GET" in again.json()["hint"]
    assert (await app.granted_values(ns)).json() == {"secrets": {"API_TOKEN": "tok-value"}}

    # a deleted organization secret just drops out; a PUT of [] revokes everything
    assert (await app.http.delete("/v1/organizations/secrets/API_TOKEN")).status_code == 200
    assert (await app.granted_values(ns)).json() == {"secrets": {}}
    await app.secret("API_TOKEN", "recreated")
    assert (await app.granted_values(ns)).json() == {"secrets": {"API_TOKEN": "recreated"}}
    cleared = await app.http.put(GRANTS, json={"secret_names": []})
    assert cleared.status_code == 200 and cleared.json()["granted"] == []
    assert (await app.granted_values(ns)).json() == {"secrets": {}}


async def test_names_the_plugin_does_not_declare_or_the_organization_lacks_are_a_422_naming_the_fix(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "v")
    await app.secret("UNDECLARED", "v")

    undeclared = await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN", "UNDECLARED"]})
    assert undeclared.status_code == 422
    body = undeclared.json()
    assert body["detail"] == f"secret_names[1]: plugin {PLUGIN} does not declare secret 'UNDECLARED'"
    assert "manifest's `secrets`" in body["hint"] and 'container.secrets.get("UNDECLARED")' in body["hint"]

    missing = await app.http.put(GRANTS, json={"secret_names": ["NOT_IN_ORG"]})
    assert missing.status_code == 422
    assert missing.json() == {
        "detail": "secret_names[0]: the organization has no secret 'NOT_IN_ORG'",
        "hint": "create it with POST /v1/organizations/secrets",
    }

    for bad in ({"secret_names": ["no-dashes"]}, {"secret_names": "API_TOKEN"}, {"secrets": ["API_TOKEN"]}):
        refused = await app.http.put(GRANTS, json=bad)
        assert refused.status_code == 422 and "secret_names" in refused.json()["detail"], refused.text
    assert (await app.http.get(GRANTS)).json()["granted"] == []  # nothing was granted by the refusals


async def test_a_plugin_not_scanned_yet_declares_nothing_and_can_be_granted_nothing(app: App) -> None:
    await app.upload(scanned=None)
    await app.secret("API_TOKEN", "v")
    listed = await app.http.get(GRANTS)
    assert listed.status_code == 200 and (listed.json()["declared"], listed.json()["granted"]) == ([], [])
    refused = await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN"]})
    assert refused.status_code == 422
    assert "does not declare secret 'API_TOKEN' (its scan is scanning: none yet)" in refused.json()["detail"]
    assert (await app.http.get("/v1/namespaces/docs/plugins/nope_1_0_0/secrets")).status_code == 404


async def test_only_org_admin_keys_grant_and_revoke_but_keys_of_the_namespace_read(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "v")
    assert (await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN"]})).status_code == 200
    for who in (await app.key(), await app.key(namespaces=["docs"])):
        assert (await app.http.get(GRANTS, headers=who)).json()["granted"] == ["API_TOKEN"]
        for method, path, body in (
            ("PUT", GRANTS, {"secret_names": []}),
            ("DELETE", f"{GRANTS}/API_TOKEN", None),
        ):
            refused = await app.http.request(method, path, json=body, headers=who)
            assert refused.status_code == 403, refused.text
            assert "needs an org-admin key" in refused.json()["detail"]
    assert (await app.http.get(GRANTS)).json()["granted"] == ["API_TOKEN"]
    assert (await app.http.get(GRANTS, headers={"Authorization": ""})).status_code == 401


async def test_a_key_of_another_namespace_gets_404_as_for_every_namespace_route(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "v")
    assert (await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN"]})).status_code == 200
    assert (await app.http.post("/v1/namespaces", json={"namespace_name": "other"})).status_code == 201
    other = await app.key(namespaces=["other"])
    ns = await docs_id(app)
    for path in (GRANTS, GRANTS.replace("/docs/", f"/{ns}/"), GRANTS.replace("/docs/", "/other/")):
        for method, target, body in (
            ("GET", path, None),
            ("PUT", path, {"secret_names": []}),
            ("DELETE", f"{path}/API_TOKEN", None),
        ):
            refused = await app.http.request(method, target, json=body, headers=other)
            assert refused.status_code == 404, (method, target, refused.text)
    plugin_404 = await app.http.get(f"/v1/namespaces/docs/plugins/{PLUGIN}", headers=other)
    assert (await app.http.get(GRANTS, headers=other)).json() == plugin_404.json()  # the same refusal
    assert (await app.http.get(GRANTS)).json()["granted"] == ["API_TOKEN"]


async def test_the_internal_api_needs_the_service_token_and_is_not_on_the_public_app(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "v")
    await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN"]})
    body = {"namespace_id": await docs_id(app), "plugin_id": PLUGIN}
    for auth in ("", "Bearer wrong", f"Bearer {ADMIN_KEY}", TOKEN):
        refused = await app.internal.post(SECRETS_PATH, json=body, headers={"Authorization": auth})
        assert refused.status_code == 401, (auth, refused.text)
        assert "FEATUREBUS_INTERNAL_TOKEN" in refused.json()["detail"]
    for path in ("/docs", "/openapi.json"):
        assert (await app.internal.get(path, headers={"Authorization": ""})).status_code == 401

    public = await app.http.post(SECRETS_PATH, json=body)
    assert public.status_code == 404 and '"v"' not in public.text
    with_token = await app.http.post(SECRETS_PATH, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert with_token.status_code == 404
    paths = (await app.http.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith("/internal")]

    unknown = await app.granted_values("ns_nope")
    assert unknown.status_code == 404 and "ns_nope" in unknown.json()["detail"]
    assert (await app.granted_values(body["namespace_id"], "nope_1_0_0")).status_code == 404
    malformed = await app.internal.post(SECRETS_PATH, json={"namespace_id": body["namespace_id"]})
    assert malformed.status_code == 422 and "plugin_id" in malformed.json()["detail"]


async def test_an_internal_api_without_a_token_refuses_every_request(tmp_path: Path) -> None:
    settings = RegistrySettings(topic_prefix=PREFIX, data_dir=str(tmp_path))
    public = build_app(settings, tables=Tables.in_memory(), store=MemoryObjectStore())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=public.state.internal_api)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as internal:
        refused = await internal.post(
            SECRETS_PATH, json={"namespace_id": "ns", "plugin_id": "p"}, headers={"Authorization": "Bearer x"}
        )
    assert refused.status_code == 401 and "has no FEATUREBUS_INTERNAL_TOKEN" in refused.json()["detail"]


async def test_grants_vanish_with_their_plugin(app: App) -> None:
    await app.upload(manifest(*DECLARED))
    await app.secret("API_TOKEN", "v")
    await app.http.put(GRANTS, json={"secret_names": ["API_TOKEN"]})
    ns = await docs_id(app)
    assert await app.tables.secret_grants.find(plugin_id=PLUGIN)
    deleted = await app.http.delete(f"/v1/namespaces/docs/plugins/{PLUGIN}")
    assert deleted.status_code == 200, deleted.text
    assert await app.tables.secret_grants.find(plugin_id=PLUGIN) == []
    assert (await app.http.get(GRANTS)).status_code == 404
    assert (await app.granted_values(ns)).status_code == 404

    await app.upload(manifest(*DECLARED))  # the same id again: it starts with no grants
    assert (await app.http.get(GRANTS)).json()["granted"] == []
    assert (await app.granted_values(ns)).json() == {"secrets": {}}


# ----------------------------------------------------------------------------- on the twins


def with_secrets(p: Plugin, *names: str) -> Plugin:
    assert p.manifest is not None
    return p.model_copy(update={"manifest": p.manifest.model_copy(update={"secrets": list(names)})})


async def test_a_grant_made_for_another_archive_gives_nothing() -> None:
    t = twins()
    ns = await t.namespace("docs")
    p = with_secrets(await plugin(t, ns), "API_TOKEN")
    await t.tables.plugins.save(p)
    await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "v")
    await secret_grants.replace_grant(t.c, ADMIN, "docs", p.plugin_id, ["API_TOKEN"])
    assert await secret_grants.granted_values(t.c, ns.id, p.plugin_id) == {"API_TOKEN": "v"}
    # e.g. a grant saved while its plugin was deleted, then the id uploaded again with another archive
    await t.tables.plugins.save(p.model_copy(update={"archive_sha256": "1" * 64}))
    assert await secret_grants.granted_values(t.c, ns.id, p.plugin_id) == {}
    assert (await secret_grants.plugin_secrets(t.c, ADMIN, "docs", p.plugin_id)).granted == []


async def test_a_name_the_manifest_stopped_declaring_is_not_given() -> None:
    t = twins()
    ns = await t.namespace("docs")
    p = with_secrets(await plugin(t, ns), "API_TOKEN", "OTHER")
    await t.tables.plugins.save(p)
    for name in ("API_TOKEN", "OTHER"):
        await secrets.create_secret(t.c, ADMIN, name, name.lower())
    await secret_grants.replace_grant(t.c, ADMIN, "docs", p.plugin_id, ["API_TOKEN", "OTHER"])
    await t.tables.plugins.save(with_secrets(p, "OTHER"))
    assert await secret_grants.granted_values(t.c, ns.id, p.plugin_id) == {"OTHER": "other"}


async def test_a_secret_the_registry_cannot_decrypt_is_a_loud_500() -> None:
    t = twins()
    ns = await t.namespace("docs")
    p = with_secrets(await plugin(t, ns), "API_TOKEN")
    await t.tables.plugins.save(p)
    await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "v")
    await secret_grants.replace_grant(t.c, ADMIN, "docs", p.plugin_id, ["API_TOKEN"])
    stored = await t.tables.secrets.get(f"{ns.org_id}/API_TOKEN")
    assert stored is not None
    await t.tables.secrets.save(Secret(**{**stored.model_dump(), "ciphertext": "not-fernet"}))
    with pytest.raises(Internal, match="'API_TOKEN' cannot be decrypted") as refused:
        await secret_grants.granted_values(t.c, ns.id, p.plugin_id)
    assert refused.value.hint and "FEATUREBUS_SECRETS_KEY" in refused.value.hint


async def org_toy(t: Twins) -> Plugin:
    """An organization plugin toy 1.0.0 declaring API_TOKEN, its scan passed."""
    upload, url = await org_plugins.create_org_plugin_upload(t.c, ADMIN, "toy", "1.0.0")
    t.store.put_presigned(url, b"PK\x03\x04 org toy")
    confirmed = (await org_plugins.confirm_org_plugin_upload(t.c, ADMIN, upload.id)).plugin
    await plugins.apply_scan(
        t.c,
        PluginScanned(
            org_id=confirmed.org_id,
            namespace_id=confirmed.namespace_id,
            plugin_id=confirmed.plugin_id,
            archive_sha256=confirmed.archive_sha256,
            passed=True,
            manifest=manifest("API_TOKEN"),
        ),
    )
    return confirmed


async def test_an_organization_plugin_is_granted_per_namespace_and_its_grants_go_with_it() -> None:
    t = twins()
    docs, other = await t.namespace("docs"), await t.namespace("other")
    await org_toy(t)
    await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "v")
    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN, True)
    assert (await secret_grants.plugin_secrets(t.c, ADMIN, "docs", PLUGIN)).declared == ["API_TOKEN"]
    await secret_grants.replace_grant(t.c, ADMIN, "docs", PLUGIN, ["API_TOKEN"])
    assert await secret_grants.granted_values(t.c, docs.id, PLUGIN) == {"API_TOKEN": "v"}
    assert await secret_grants.granted_values(t.c, other.id, PLUGIN) == {}  # not granted there

    await org_plugins.set_enabled(t.c, ADMIN, "docs", PLUGIN, False)
    await org_plugins.delete_org_plugin(t.c, ADMIN, PLUGIN)
    assert await t.tables.secret_grants.find(plugin_id=PLUGIN) == []
    with pytest.raises(NotFound):
        await secret_grants.granted_values(t.c, docs.id, PLUGIN)


# ----------------------------------------------------------------------------- on the real stack


@pytest.mark.integration
async def test_the_registry_serves_the_internal_api_on_a_listener_of_its_own(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """build_app's lifespan on MongoDB, Kafka and S3: the secrets API listens on its own port (and
    stops with the app), grants are stored in MongoDB, the public app answers 404 for /internal."""
    from stack import free_port

    env = request.getfixturevalue("local_stack").env()
    port, tag = free_port(), uuid.uuid4().hex[:8]
    settings = RegistrySettings(
        kafka_bootstrap=env["FEATUREBUS_KAFKA_BOOTSTRAP"],
        kafka_idempotence=env["FEATUREBUS_KAFKA_IDEMPOTENCE"] == "true",
        mongo_uri=env["FEATUREBUS_MONGO_URI"],
        mongo_db=f"fbtest_{tag}_grants",
        s3_endpoint=env["FEATUREBUS_S3_ENDPOINT"],
        s3_access_key=env["FEATUREBUS_S3_ACCESS_KEY"],
        s3_secret_key=env["FEATUREBUS_S3_SECRET_KEY"],
        s3_bucket=env["FEATUREBUS_S3_BUCKET"],
        topic_prefix=f"t-grants-{tag}.",
        data_dir=str(tmp_path),
        admin_api_key=ADMIN_KEY,
        internal_token=TOKEN,
        registry_internal_port=port,
    )
    public = build_app(settings)
    c = public.state.ctx
    internal_url = f"http://127.0.0.1:{port}{SECRETS_PATH}"
    async with public.router.lifespan_context(public):
        namespace = Namespace(id=f"ns_{tag}", org_id="org_default", namespace_name=f"docs-{tag}")
        await c.tables.namespaces.insert(namespace)
        p = Plugin(
            id=f"{namespace.id}/{PLUGIN}",
            org_id=namespace.org_id,
            namespace_id=namespace.id,
            plugin_id=PLUGIN,
            name="toy",
            version="1.0.0",
            archive_uri="s3://featurebus/plugins/toy.zip",
            archive_sha256="0" * 64,
            size_bytes=10,
            scan_status="passed",
            manifest=manifest("API_TOKEN"),
        )
        await c.tables.plugins.insert(p)
        admin = Principal("org_default", "key_admin", admin=True, namespaces=None)
        await secrets.create_secret(c, admin, "API_TOKEN", f"value-{tag}")
        await secret_grants.replace_grant(c, admin, namespace.id, p.plugin_id, ["API_TOKEN"])
        body = {"namespace_id": namespace.id, "plugin_id": p.plugin_id}
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(internal_url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 200 and answer.json() == {"secrets": {"API_TOKEN": f"value-{tag}"}}
            assert (await http.post(internal_url, json=body)).status_code == 401
            # the REST app itself does not serve it (whichever port it is run on)
            transport = httpx.ASGITransport(app=public)
            async with httpx.AsyncClient(transport=transport, base_url="http://registry") as rest:
                headers = {"Authorization": f"Bearer {TOKEN}"}
                assert (await rest.post(SECRETS_PATH, json=body, headers=headers)).status_code == 404
        stored = await c.tables.secret_grants.find(org_id="org_default", plugin_id=p.plugin_id)
        assert [g.secret_names for g in stored] == [["API_TOKEN"]]
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(internal_url, json=body)
