"""The registry's internal HTTP API: a plugin's granted secrets for inference's workers, and the
cluster models inference asks to have fetched from the model hub.

``POST /internal/v1/secrets`` (:class:`~featurebus.common.queries.SecretsRequest` →
:class:`~featurebus.common.queries.SecretsResponse`) answers the
decrypted values of the secrets granted to a plugin in a namespace that the plugin still declares
and the organization still has (:func:`featurebus.registry.usecases.secret_grants.granted_values`).
It is served on a listener of its own (``FEATUREBUS_REGISTRY_INTERNAL_HOST``/``_PORT``), never by
the public REST app, and every request needs the service token. An unknown namespace or plugin is
a 404, a secret the registry's key cannot decrypt a 500, both ``{"detail", "hint"}``.

``POST /internal/v1/models/fetch`` (:class:`~featurebus.common.queries.ModelFetchRequest` →
:class:`~featurebus.common.queries.ModelFetchResponse`): a cluster model a plugin names that the
registry lacks, downloaded once from the hub when ``FEATUREBUS_MODEL_HUB`` is on
(:mod:`featurebus.registry.usecases.hub_models`).
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import SecretStr

from featurebus.common.internal_api import ServiceTokenGuard
from featurebus.common.queries import (
    MODEL_FETCH_PATH,
    SECRETS_PATH,
    ModelFetchRequest,
    ModelFetchResponse,
    SecretsRequest,
    SecretsResponse,
)
from featurebus.registry.context import Ctx
from featurebus.registry.errors import install_error_handlers
from featurebus.registry.usecases.hub_models import HubDownload, fetch_model, hub_download
from featurebus.registry.usecases.secret_grants import granted_values

__all__ = ["build_secrets_api"]


def build_secrets_api(c: Ctx, token: SecretStr | None, download: HubDownload | None = None) -> FastAPI:
    """The app; every route behind the service token. ``download``: how models come from the hub
    (by default the settings' hub when FEATUREBUS_MODEL_HUB is on, else none)."""
    settings = c.settings
    if download is None and settings.model_hub:
        hub_token = settings.model_hub_token.get_secret_value() if settings.model_hub_token else None
        download = hub_download(settings.model_hub_endpoint, hub_token)
    app = FastAPI(title="featurebus registry (internal)", version="0.1.0", docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(ServiceTokenGuard, token=token, service="registry")

    @app.post(SECRETS_PATH)
    async def plugin_secrets(request: SecretsRequest) -> SecretsResponse:
        return SecretsResponse(secrets=await granted_values(c, request.namespace_id, request.plugin_id))

    @app.post(MODEL_FETCH_PATH)
    async def fetch_hub_model(request: ModelFetchRequest) -> ModelFetchResponse:
        return await fetch_model(c, request.name, download)

    return app
