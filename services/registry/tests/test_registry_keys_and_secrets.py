"""API keys and organization secrets are the admins' own, on the twins."""

from __future__ import annotations

import pytest
from registry_twins import ADMIN, MEMBER, limited_to, twins

from featurebus.registry.errors import Conflict, Forbidden, Invalid, NotFound
from featurebus.registry.key_rules import Principal
from featurebus.registry.usecases import api_keys, secrets


async def test_a_key_is_stored_as_a_hash_and_shown_once() -> None:
    t = twins()
    record, key = await api_keys.create_key(t.c, ADMIN, "ci")
    assert (
        key.startswith("fb_")
        and key not in record.model_dump_json()
        and record.prefix
        and key.startswith(record.prefix)
    )
    listed, total = await api_keys.list_keys(t.c, ADMIN, 0, 100)
    assert total == 1 and listed[0].id == record.id and key not in listed[0].model_dump_json()


async def test_a_limited_key_records_namespace_ids_however_they_were_named() -> None:
    t = twins()
    docs = await t.namespace("docs")
    record, _ = await api_keys.create_key(t.c, ADMIN, "ci", namespaces=["docs", docs.id])
    assert record.namespaces == [docs.id]
    with pytest.raises(Invalid, match=r"namespaces\[1\]: namespace 'nope' not found"):
        await api_keys.create_key(t.c, ADMIN, "ci", namespaces=["docs", "nope"])
    with pytest.raises(Invalid, match="admin: an admin key cannot be limited"):
        await api_keys.create_key(t.c, ADMIN, "ci", namespaces=["docs"], admin=True)
    with pytest.raises(Invalid, match="expires_in_seconds must be positive") as bad:
        await api_keys.create_key(t.c, ADMIN, "ci", expires_in_seconds=0)
    assert bad.value.hint and "expires_in_seconds" in bad.value.hint


@pytest.mark.parametrize("who", [MEMBER, limited_to("ns_docs")])
async def test_only_admin_keys_manage_keys_and_secrets(who: Principal) -> None:
    t = twins()
    await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "v")
    attempts = [
        api_keys.create_key(t.c, who, "mine", admin=True),
        api_keys.list_keys(t.c, who, 0, 10),
        api_keys.revoke_key(t.c, who, ADMIN.key_id),
        secrets.list_secrets(t.c, who, 0, 10),
        secrets.create_secret(t.c, who, "MINE", "v"),
        secrets.update_secret(t.c, who, "API_TOKEN", "overwritten"),
        secrets.delete_secret(t.c, who, "API_TOKEN"),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden, match="needs an org-admin key"):
            await attempt
    stored = await t.tables.secrets.get(f"{ADMIN.org_id}/API_TOKEN")
    assert stored is not None and t.c.cipher.decrypt(stored.ciphertext.encode()) == b"v"


async def test_revoking_is_idempotent_and_never_removes_the_last_admin_key() -> None:
    t = twins()
    first, _ = await api_keys.create_key(t.c, ADMIN, "admin-1", admin=True)
    second, _ = await api_keys.create_key(t.c, ADMIN, "admin-2", admin=True)
    assert (await api_keys.revoke_key(t.c, ADMIN, first.id)).revoked_at is not None
    again = await api_keys.revoke_key(t.c, ADMIN, first.id)
    assert again.revoked_at == (await t.tables.api_keys.get(first.id)).revoked_at  # type: ignore[union-attr]
    with pytest.raises(Conflict, match="last usable admin key"):
        await api_keys.revoke_key(t.c, ADMIN, second.id)
    with pytest.raises(NotFound, match="API key 'key_nope' not found"):
        await api_keys.revoke_key(t.c, ADMIN, "key_nope")


async def test_another_organizations_keys_and_secrets_are_not_found() -> None:
    t = twins()
    theirs = Principal("org_2", "key_theirs", admin=True, namespaces=None)
    record, _ = await api_keys.create_key(t.c, theirs, "theirs")
    await secrets.create_secret(t.c, theirs, "THEIR_TOKEN", "v")
    with pytest.raises(NotFound):
        await api_keys.revoke_key(t.c, ADMIN, record.id)
    with pytest.raises(NotFound):
        await secrets.update_secret(t.c, ADMIN, "THEIR_TOKEN", "x")
    assert await api_keys.list_keys(t.c, ADMIN, 0, 10) == ([], 0)
    assert await secrets.list_secrets(t.c, ADMIN, 0, 10) == ([], 0)


async def test_a_secret_is_encrypted_at_rest_updated_in_place_and_deleted() -> None:
    t = twins()
    created = await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "s3cr3t")
    assert "s3cr3t" not in created.model_dump_json()
    with pytest.raises(Conflict, match="secret 'API_TOKEN' exists") as clash:
        await secrets.create_secret(t.c, ADMIN, "API_TOKEN", "again")
    assert clash.value.hint == "update it with PUT /v1/organizations/secrets/API_TOKEN"
    updated = await secrets.update_secret(t.c, ADMIN, "API_TOKEN", "rotated")
    assert t.c.cipher.decrypt(updated.ciphertext.encode()) == b"rotated" and updated.updated_at >= created.updated_at
    await secrets.delete_secret(t.c, ADMIN, "API_TOKEN")
    with pytest.raises(NotFound, match="secret 'API_TOKEN' not found"):
        await secrets.delete_secret(t.c, ADMIN, "API_TOKEN")
