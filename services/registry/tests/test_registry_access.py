"""Who is calling and what they may reach, on the twins: keys, namespaces, the first admin key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from registry_twins import ADMIN, ORG, limited_to, twins

from featurebus.registry.auth import (
    DEFAULT_ORG,
    authenticate,
    bootstrap_admin_key,
    hash_key,
    may_see_namespace,
    resolve_namespace,
)
from featurebus.registry.errors import Conflict, Forbidden, NotFound, Unauthorized
from featurebus.registry.records import ApiKey, Namespace, now
from featurebus.registry.usecases import api_keys, namespaces


async def test_a_request_needs_a_bearer_key_that_exists_and_is_usable() -> None:
    t = twins()
    record, key = await api_keys.create_key(t.c, ADMIN, "ci")
    who = await authenticate(t.tables, f"Bearer {key}")
    assert (who.org_id, who.key_id, who.admin, who.namespaces) == (ORG, record.id, False, None)
    for header, text in [("", "missing API key"), (f"Basic {key}", "missing API key"), ("Bearer fb_nope", "invalid")]:
        with pytest.raises(Unauthorized, match=text):
            await authenticate(t.tables, header)
    await api_keys.revoke_key(t.c, ADMIN, record.id)
    with pytest.raises(Unauthorized, match=f"API key {record.id} was revoked") as refused:
        await authenticate(t.tables, f"Bearer {key}")
    assert refused.value.hint and "POST /v1/organizations/api-keys" in refused.value.hint


async def test_an_expired_key_is_refused_and_use_is_recorded_at_most_once_a_minute() -> None:
    t = twins()
    record, key = await api_keys.create_key(t.c, ADMIN, "ci", expires_in_seconds=3600)
    await authenticate(t.tables, f"Bearer {key}")
    first = await t.tables.api_keys.get(record.id)
    assert first is not None and first.last_used_at is not None
    await authenticate(t.tables, f"Bearer {key}")
    again = await t.tables.api_keys.get(record.id)
    assert again is not None and again.last_used_at == first.last_used_at
    await t.tables.api_keys.update(record.id, {"expires_at": now() - timedelta(seconds=1)})
    with pytest.raises(Unauthorized, match="expired at"):
        await authenticate(t.tables, f"Bearer {key}")


async def test_a_namespace_is_found_by_id_or_name_only_by_keys_that_may_use_it() -> None:
    t = twins()
    docs, other = await t.namespace("docs"), await t.namespace("other")
    assert (await resolve_namespace(t.tables, ADMIN, "docs")).id == docs.id
    assert (await resolve_namespace(t.tables, ADMIN, docs.id)).id == docs.id
    limited = limited_to(docs.id)
    assert (await resolve_namespace(t.tables, limited, "docs")).id == docs.id
    with pytest.raises(NotFound, match="namespace 'other' not found"):
        await resolve_namespace(t.tables, limited, "other")
    assert await may_see_namespace(t.tables, limited, docs.id)
    assert not await may_see_namespace(t.tables, limited, other.id)
    await t.namespace("theirs", org="org_2")
    with pytest.raises(NotFound):
        await resolve_namespace(t.tables, ADMIN, "theirs")  # another organization's namespace


async def test_a_namespace_named_like_a_keys_namespace_id_stays_out_of_its_reach() -> None:
    t = twins()
    docs = await t.namespace("docs")
    await t.tables.namespaces.insert(Namespace(id="ns_decoy", org_id=ORG, namespace_name=docs.id + "x"))
    await t.tables.namespaces.insert(Namespace(id="ns_named", org_id=ORG, namespace_name="ns_docs_alias"))
    limited = limited_to(docs.id)
    with pytest.raises(NotFound):
        await resolve_namespace(t.tables, limited, "ns_docs_alias")
    found, total = await namespaces.list_namespaces(t.c, limited, 0, 100)
    assert [n.id for n in found] == [docs.id] and total == 1


async def test_namespaces_are_created_once_per_name_and_only_by_keys_of_the_whole_organization() -> None:
    t = twins()
    created = await namespaces.create_namespace(t.c, ADMIN, "docs", "the docs")
    assert (await namespaces.get_namespace(t.c, ADMIN, "docs")).description == "the docs"
    with pytest.raises(Conflict, match="namespace 'docs' exists"):
        await namespaces.create_namespace(t.c, ADMIN, "docs", "")
    with pytest.raises(Forbidden, match="needs a key for the whole organization"):
        await namespaces.create_namespace(t.c, limited_to(created.id), "mine", "")


async def test_a_fresh_install_gets_one_admin_key_written_to_a_private_file(tmp_path: Path) -> None:
    t = twins()
    await bootstrap_admin_key(t.tables, None, tmp_path)
    path = tmp_path / "admin-api-key"
    key = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    who = await authenticate(t.tables, f"Bearer {key}")
    assert who.admin and who.org_id == DEFAULT_ORG
    await bootstrap_admin_key(t.tables, None, tmp_path)  # a restart keeps the usable key
    assert path.read_text().strip() == key and len(await t.tables.api_keys.find(admin=True)) == 1


async def test_a_new_admin_key_is_made_when_every_admin_key_is_revoked(tmp_path: Path) -> None:
    t = twins()
    await bootstrap_admin_key(t.tables, None, tmp_path)
    (old,) = await t.tables.api_keys.find(admin=True)
    await t.tables.api_keys.update(old.id, {"revoked_at": now()})
    await bootstrap_admin_key(t.tables, None, tmp_path)
    key = (tmp_path / "admin-api-key").read_text().strip()
    assert (await authenticate(t.tables, f"Bearer {key}")).key_id != old.id


async def test_a_configured_admin_key_is_stored_once_and_no_file_is_written(tmp_path: Path) -> None:
    t = twins()
    for _ in range(2):
        await bootstrap_admin_key(t.tables, "fb_configured_key_0123456789", tmp_path)
    assert not (tmp_path / "admin-api-key").exists()
    stored = await t.tables.api_keys.find(key_hash=hash_key("fb_configured_key_0123456789"))
    assert len(stored) == 1 and isinstance(stored[0], ApiKey) and stored[0].admin
