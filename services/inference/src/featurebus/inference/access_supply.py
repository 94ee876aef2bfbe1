"""What a plugin's workers get besides its archive: the secrets granted to it, and the operator's LLM.

The registry keeps the organization's secrets and which of them an org admin granted to which
plugin; inference asks its internal API (``POST /internal/v1/secrets``, under the service token)
for a plugin's granted values when it starts that plugin's workers, and hands them to the
workers through Ray with the archive. Nothing is asked for a plugin that declares no secret. A
grant or a revocation reaches workers started after it (the answer is kept ``ttl_s``); running
workers keep what they were started with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import httpx
from pydantic import SecretStr, ValidationError

from featurebus.common.events import PluginRef
from featurebus.common.internal_api import bearer
from featurebus.common.kafka import TransientError
from featurebus.common.queries import SECRETS_PATH, SecretsRequest, SecretsResponse
from featurebus.common.telemetry import inject_trace
from featurebus.inference.plugin_access import LLMSettings
from featurebus.sdk.container import redact

__all__ = ["AccessSupply", "PluginAccess"]


@dataclass(frozen=True)
class PluginAccess:
    """One plugin's granted secrets and the LLM provider its ``container.llm`` calls reach."""

    namespace_id: str
    plugin_id: str
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    llm: LLMSettings | None = None

    def hidden(self) -> list[str]:
        """The values no log, row error or answer may show."""
        values = list(self.secrets.values())
        if self.llm is not None and self.llm.api_key is not None:
            values.append(self.llm.api_key.get_secret_value())
        return values

    def redact(self, text: str) -> str:
        return redact(text, self.hidden())


class AccessSupply:
    """Fetches the secrets granted to each plugin (``prepare``) before its workers start (``access``)."""

    def __init__(
        self,
        registry_url: str,
        token: SecretStr | None,
        llm: LLMSettings | None,
        ttl_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.registry_url = registry_url.rstrip("/")
        self.token = token
        self.llm = llm if llm is not None and llm.configured else None
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._granted: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def prepare(self, plugin: PluginRef) -> None:
        """The plugin's granted secrets, fetched unless fetched in the last ``ttl_s``; TransientError
        while the registry cannot answer (the frame is retried, not failed)."""
        if not plugin.secrets:
            return
        key = (plugin.namespace_id, plugin.plugin_id)
        fetched = self._granted.get(key)
        if fetched is not None and time.monotonic() - fetched[0] < self.ttl_s:
            return
        self._granted[key] = (time.monotonic(), await self._fetch(plugin))

    def access(self, plugin: PluginRef) -> PluginAccess:
        _, secrets = self._granted.get((plugin.namespace_id, plugin.plugin_id), (0.0, {}))
        declared = set(plugin.secrets)
        return PluginAccess(
            plugin.namespace_id, plugin.plugin_id, {k: v for k, v in secrets.items() if k in declared}, self.llm
        )

    async def _fetch(self, plugin: PluginRef) -> dict[str, str]:
        body = SecretsRequest(namespace_id=plugin.namespace_id, plugin_id=plugin.plugin_id).model_dump_json()
        headers = {**bearer(self.token), "Content-Type": "application/json", **inject_trace()}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                response = await client.post(f"{self.registry_url}{SECRETS_PATH}", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _unavailable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:  # the plugin or its namespace is gone: nothing is granted
            return {}
        if response.status_code != 200:
            raise _unavailable(f"HTTP {response.status_code}: {response.text[:300]}")
        try:
            return SecretsResponse.model_validate_json(response.content).secrets
        except ValidationError:
            raise _unavailable("the registry answered without a secrets mapping") from None


def _unavailable(why: str) -> TransientError:
    return TransientError(
        f"the registry's internal API (FEATUREBUS_REGISTRY_INTERNAL_URL) did not give the plugin's granted secrets: {why}"
    )
