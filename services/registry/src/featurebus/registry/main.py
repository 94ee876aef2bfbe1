"""Composition root of the registry: settings, MongoDB, object store, Kafka, the FastAPI app."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from beanie import init_beanie
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient

from featurebus.common import telemetry
from featurebus.common.kafka import Bus
from featurebus.common.objectstore import ObjectStore
from featurebus.common.startup import until_ready
from featurebus.registry.answers import Answers
from featurebus.registry.auth import bootstrap_admin_key
from featurebus.registry.body_guard import BodyGuard
from featurebus.registry.config import RegistrySettings
from featurebus.registry.context import Ctx
from featurebus.registry.documents import ALL_DOCUMENTS
from featurebus.registry.errors import install_error_handlers
from featurebus.registry.handlers import register
from featurebus.registry.routes import (
    api_keys,
    batches,
    blob_uploads,
    buckets,
    collections,
    namespaces,
    objects,
    plugins,
    retrievers,
    secrets,
    tasks,
)

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
    settings: RegistrySettings | None = None, *, bus: Bus | None = None, store: ObjectStore | None = None
) -> FastAPI:
    settings = settings or RegistrySettings()
    bus = bus or Bus(settings, client_id="registry")
    store = store or ObjectStore(settings)
    answers = Answers()
    register(bus, answers)
    mongo: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongo_uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await until_ready(
            "mongodb", lambda: init_beanie(database=mongo[settings.mongo_db], document_models=ALL_DOCUMENTS)
        )
        await bootstrap_admin_key(settings.admin_api_key, Path(settings.data_dir))
        await until_ready("kafka", bus.ensure_topics)
        await until_ready("the object store", store.ensure_bucket)
        await bus.broker.start()
        app.state.ctx = Ctx(settings, bus, store, answers, secrets_cipher(settings))
        log.info("registry ready on http://%s:%d", settings.http_host, settings.http_port)
        try:
            yield
        finally:
            await bus.broker.stop()
            await store.close()
            await mongo.close()

    app = FastAPI(title="featurebus", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_request_bytes)
    for module in (
        namespaces,
        api_keys,
        secrets,
        plugins,
        buckets,
        objects,
        blob_uploads,
        batches,
        tasks,
        collections,
        retrievers,
    ):
        app.include_router(module.router)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        problems = {}
        try:
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
    telemetry.configure("registry", settings.log_level, settings.trace_to_log)
    uvicorn.run(
        build_app(settings), host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )
