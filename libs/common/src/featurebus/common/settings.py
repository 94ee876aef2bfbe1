"""Configuration blocks shared by every service (env prefix ``FEATUREBUS_``).

Each service subclasses :class:`CommonSettings` and adds its own fields; nothing else in the
code base reads ``os.environ``. Defaults match ``deploy/local`` so that ``make run`` needs no
configuration at all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATA_DIR", "CommonSettings"]

DEFAULT_DATA_DIR = Path(".featurebus")


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEATUREBUS_", extra="ignore")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:19092"
    # Prepended to every topic name and consumer group: lets tests (and tenants of one cluster)
    # run side by side on one broker without seeing each other's messages.
    topic_prefix: str = ""
    # Partitions of each topic created at start-up. Parallelism of one consumer group is bounded by
    # it: keep it at least (inference processes) x FEATUREBUS_FRAME_WORKERS so that every consumer gets work.
    topic_partitions: int = 8

    # MongoDB
    mongo_uri: str = "mongodb://127.0.0.1:27117/?directConnection=true"
    mongo_db: str = "featurebus"

    # S3 / object store
    s3_endpoint: str = "127.0.0.1:8333"
    s3_access_key: str = "featurebus"
    s3_secret_key: str = "featurebus-local-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "featurebus"

    # Where a service keeps local state (Qdrant local mode, plugin caches, ...).
    data_dir: Path = DEFAULT_DATA_DIR

    log_level: str = "INFO"
    # OTLP is not bundled; traces go to the log when this is true.
    trace_to_log: bool = False
