"""Composition root of the registry: settings, MongoDB, object store, Kafka, the query services, the FastAPI app.

Next to the public REST app, the same process serves the internal secrets API (``secrets_api.py``)
on a listener of its own, started and stopped by the public app's lifespan; the public app has no
``/internal`` route. ``build_app`` keeps that app in ``app.state.internal_api`` (tests call it
through httpx's ASGITransport).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient

from featurebus.common import telemetry
from featurebus.common.http_observing import ObservedRequests
from featurebus.common.internal_api import InternalServer
from featurebus.common.kafka import Bus
from featurebus.common.metrics import MetricsEndpoint, ProcessMetrics
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.registry.auth import bootstrap_admin_key
from featurebus.registry.body_guard import BodyGuard
from featurebus.registry.config import RegistrySettings
from featurebus.registry.context import Ctx
from featurebus.registry.errors import install_error_handlers
from featurebus.registry.handlers import register
from featurebus.registry.mongo_tables import mongo_tables
from featurebus.registry.query_services import HttpQueryServices, QueryServices
from featurebus.registry.routes import (
    api_keys,
    batches,
    blob_uploads,
    buckets,
    collections,
    models,
    namespaces,
    objects,
    org_plugins,
    plugin_infer,
    plugins,
    retrievers,
    secret_grants,
    secrets,
    tasks,
)
from featurebus.registry.secrets_api import build_secrets_api
from featurebus.registry.tables import Tables

__all__ = ["build_app", "main"]

log = logging.getLogger("featurebus.registry")


def secrets_cipher(settings: RegistrySettings) -> Fernet:
    """The Fernet key for secrets at rest: configured, or generated once into DATA_DIR/secrets.key."""
    if settings.secrets_key:
        return Fernet(settings.secrets_key.encode())
    path = Path(settings.data_dir) / "secrets.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key())
    return Fernet(path.read_bytes().strip())


def build_app(
    settings: RegistrySettings | None = None,
    *,
    tables: Tables | None = None,
    bus: Bus | None = None,
    store: ObjectStore | None = None,
    queries: QueryServices | None = None,
) -> FastAPI:
    """The registry's app; MongoDB, Kafka, S3 and the query services from ``settings`` unless given (tests pass twins)."""
    settings = settings or RegistrySettings()
    bus = bus or Bus(settings, client_id="registry")
    store = store or ObjectStore(settings)
    mongo: AsyncMongoClient[Any] | None = None
    if tables is None:
        mongo = AsyncMongoClient(settings.mongo_uri, tz_aware=True)
        tables = mongo_tables(mongo[settings.mongo_db]).reading_recent(settings.read_cache_s)
    http_queries: HttpQueryServices | None = None
    if queries is None:
        queries = http_queries = HttpQueryServices(
            settings.inference_url,
            settings.indexer_url,
            settings.internal_token,
            settings.retrieval_timeout_s,
            enrich_timeout_s=settings.llm_stage_timeout_s,
        )
    c = Ctx(settings, tables, bus, store, queries, secrets_cipher(settings))
    register(bus, c)
    metrics = ProcessMetrics(bus)  # consumer lag and DLQ depth; /metrics is on the REST port (below)
    internal_api = build_secrets_api(c, settings.internal_token)
    # Named so that its bind error names FEATUREBUS_REGISTRY_INTERNAL_HOST / _PORT.
    internal = InternalServer(
        internal_api, settings.registry_internal_host, settings.registry_internal_port, "registry_internal"
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await until_ready("mongodb", c.tables.init)
        await bootstrap_admin_key(c.tables, settings.admin_api_key, Path(settings.data_dir))
        # As the indexer does: served without a token too, refusing every request (the ERROR below says so).
        await internal.start()
        try:
            await until_ready("kafka", bus.ensure_topics)
            await until_ready("the object store", store.ensure_bucket)
            await bus.broker.start()
            await metrics.start()
        except BaseException:
            await internal.stop()
            raise
        log.info("registry ready on http://%s:%d", settings.http_host, settings.http_port)
        if settings.internal_token is None:
            log.error(
                "FEATUREBUS_INTERNAL_TOKEN is not set: inference and the indexer will refuse every search, "
                "and the registry's secrets API refuses every request"
            )
        try:
            yield
        finally:
            await internal.stop()
            await metrics.stop()
            await c.settle()
            await bus.broker.stop()
            await store.close()
            if http_queries is not None:
                await http_queries.aclose()
            if mongo is not None:
                await mongo.close()

    app = FastAPI(title="featurebus", version="0.1.0", lifespan=lifespan)
    app.state.ctx = c
    app.state.internal_api = internal_api
    install_error_handlers(app)
    app.add_middleware(
        BodyGuard,
        max_bytes=settings.max_request_bytes,
        streamed=plugins.is_form_upload,
        max_stream_bytes=settings.max_archive_bytes + plugins.FORM_OVERHEAD_BYTES,
    )
    app.add_middleware(ObservedRequests, service="registry")  # a duration per request; a span if FastAPI opens none
    app.add_middleware(MetricsEndpoint)  # GET /metrics, without an API key (the REST port is on loopback)
    for module in (
        namespaces,
        api_keys,
        secrets,
        plugins,
        secret_grants,
        plugin_infer,
        org_plugins,
        buckets,
        objects,
        blob_uploads,
        batches,
        tasks,
        collections,
        retrievers,
        models,
    ):
        app.include_router(module.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        problems = {}
        try:
            if mongo is not None:
                await mongo.admin.command("ping")
        except Exception as exc:
            problems["mongodb"] = repr(exc)
        if not await bus.broker.ping(timeout=3):
            problems["kafka"] = f"no answer from {settings.kafka_bootstrap}"
        try:
            await store.size("healthz")
        except Exception as exc:
            problems["s3"] = repr(exc)
        return JSONResponse(
            {"status": "unhealthy" if problems else "ok", **({"problems": problems} if problems else {})},
            status_code=503 if problems else 200,
        )

    return app


def main() -> None:
    settings = RegistrySettings()
    telemetry.configure("registry", settings)
    uvicorn.run(
        build_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )
