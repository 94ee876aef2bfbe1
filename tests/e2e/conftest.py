"""The whole platform — local stack plus the five services — for the end-to-end tests."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "local"))
from stack import LocalStack, free_port

from services import LocalServices

from ._client import Api


@dataclass
class Platform:
    stack: LocalStack
    services: LocalServices
    prefix: str
    admin_key: str

    @property
    def base_url(self) -> str:
        return self.services.base_url

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack.kafka_port}"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def restart(self, service: str) -> None:
        self.services.restart(service)

    def log(self, service: str) -> str:
        return self.services.log(service)


@pytest.fixture(scope="session")
def platform(
    local_stack: LocalStack,
    tmp_path_factory: pytest.TempPathFactory,
    llm_server_session: Any,
    plugin_wheelhouse: Any,
    model_hub: Any,
) -> Iterator[Platform]:
    prefix = f"e2e{secrets.token_hex(3)}."
    admin_key = "fb_" + secrets.token_urlsafe(24)
    data_dir = tmp_path_factory.mktemp("platform")
    env = {
        **local_stack.env(),
        "FEATUREBUS_TOPIC_PREFIX": prefix,
        "FEATUREBUS_MONGO_DB": f"fb_{prefix.rstrip('.')}",
        "FEATUREBUS_ADMIN_API_KEY": admin_key,
        "FEATUREBUS_LOG_LEVEL": "INFO",
        # container.llm reaches the session's local OpenAI-compatible test server.
        "FEATUREBUS_LLM_BASE_URL": llm_server_session.base_url,
        "FEATUREBUS_LLM_API_KEY": llm_server_session.api_key,
        # Plugin environments come from the session's wheel directory, with no package index.
        **plugin_wheelhouse.env(),
        # Models nobody imported are fetched from the session's local model hub.
        "FEATUREBUS_MODEL_HUB": "true",
        "FEATUREBUS_MODEL_HUB_ENDPOINT": model_hub.url,
    }
    services = LocalServices(data_dir, env, http_port=free_port())
    try:
        services.start()
        yield Platform(local_stack, services, prefix, admin_key)
    finally:
        services.stop()


@pytest.fixture(scope="session")
def api(platform: Platform) -> Api:
    return Api(platform.base_url, platform.admin_key)
