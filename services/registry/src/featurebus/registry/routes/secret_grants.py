"""``/v1/namespaces/{ns}/plugins/{plugin_id}/secrets``: the organization secrets a plugin's code
receives. Any key of the namespace reads the names (never a value); org-admin keys grant and revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from featurebus.registry.auth import Principal, principal
from featurebus.registry.context import Ctx, ctx
from featurebus.registry.routes.secrets import NAME
from featurebus.registry.usecases import secret_grants
from featurebus.registry.usecases.secret_grants import PluginSecrets

router = APIRouter(prefix="/v1/namespaces/{ns}/plugins/{plugin_id}/secrets")

MAX_GRANTS = 100


class GrantBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    secret_names: list[Annotated[str, Field(pattern=NAME, max_length=128)]] = Field(max_length=MAX_GRANTS)


class PluginSecretsView(BaseModel):
    plugin_id: str
    namespace_id: str
    declared: list[str]  # the manifest's ``secrets`` (none until the scan passed)
    granted: list[str]

    @classmethod
    def of(cls, s: PluginSecrets) -> PluginSecretsView:
        return cls(plugin_id=s.plugin_id, namespace_id=s.namespace_id, declared=s.declared, granted=s.granted)


class Revoked(PluginSecretsView):
    deleted: bool = True
    secret_name: str


@router.get("")
async def plugin_secrets(
    ns: str, plugin_id: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> PluginSecretsView:
    return PluginSecretsView.of(await secret_grants.plugin_secrets(c, who, ns, plugin_id))


@router.put("")
async def replace_grant(
    ns: str, plugin_id: str, body: GrantBody, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> PluginSecretsView:
    """Grant exactly ``secret_names`` (each declared by the plugin and held by the organization)."""
    return PluginSecretsView.of(await secret_grants.replace_grant(c, who, ns, plugin_id, body.secret_names))


@router.delete("/{secret_name}")
async def revoke_grant(
    ns: str, plugin_id: str, secret_name: str, who: Principal = Depends(principal), c: Ctx = Depends(ctx)
) -> Revoked:
    left = await secret_grants.revoke_grant(c, who, ns, plugin_id, secret_name)
    return Revoked(**PluginSecretsView.of(left).model_dump(), secret_name=secret_name)
