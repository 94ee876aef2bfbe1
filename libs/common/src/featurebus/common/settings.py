"""Configuration blocks shared by every service (env prefix ``FEATUREBUS_``).

Each service subclasses :class:`CommonSettings` and adds its own fields; nothing else in the
code base reads ``os.environ``. Defaults match ``deploy/local`` so that ``make run`` needs no
configuration at all.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_INDEXER_PORT",
    "DEFAULT_INFERENCE_PORT",
    "DEFAULT_REGISTRY_INTERNAL_PORT",
    "CommonSettings",
]

DEFAULT_DATA_DIR = Path(".featurebus")
# The internal query APIs (featurebus.common.queries) listen on 127.0.0.1 at these by default: clear
# of the registry's 8000, the local stack's ports and Ray's worker port range (10002-19999).
DEFAULT_INFERENCE_PORT = 8010
DEFAULT_INDEXER_PORT = 8020
DEFAULT_REGISTRY_INTERNAL_PORT = 8030  # the registry's internal secrets API (not its public REST port)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEATUREBUS_", extra="ignore", populate_by_name=True)

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:19092"
    # Prepended to every topic name and consumer group: lets tests (and tenants of one cluster)
    # run side by side on one broker without seeing each other's messages.
    topic_prefix: str = ""
    # Partitions of each topic created at start-up. Parallelism of one consumer group is bounded by
    # it: keep it at least (inference processes) x FEATUREBUS_FRAME_WORKERS so that every consumer gets work.
    topic_partitions: int = 8
    # Replicas of each topic created at start-up, and the in-sync replicas a write needs
    # (min.insync.replicas, set on each topic): the producers send with acks=all and idempotence,
    # so a write acknowledged is on that many brokers. 1 and 1 for one broker (the local stack,
    # deploy/compose); deploy/k8s, with three brokers, sets 3 and 2 (a broker may be down).
    topic_replication_factor: int = Field(default=1, ge=1)
    topic_min_insync_replicas: int = Field(default=1, ge=1)
    # Idempotent producers (Kafka's InitProducerId): a retried write is never stored twice. Every
    # Kafka since 0.11 and Redpanda have them; deploy/local turns them off for Tansu 0.6, whose
    # memory engine answers InitProducerId with UNKNOWN_SERVER_ERROR (acks=all stays).
    kafka_idempotence: bool = True

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
    # Where the users of the REST API reach the same store, when that is not s3_endpoint (inside
    # Compose or Kubernetes the services' endpoint is a name only they resolve): host:port (TLS as
    # s3_secure says) or http(s)://host:port (the scheme says). Only the presigned URLs handed to
    # users are signed for it (SigV4 signs the Host header: they are signed for it, never
    # rewritten); the services keep talking to s3_endpoint. Empty: presigned URLs name s3_endpoint.
    s3_public_endpoint: str = ""

    # Where a service keeps local state (Qdrant local mode, plugin caches, ...).
    data_dir: Path = DEFAULT_DATA_DIR

    log_level: str = "INFO"
    # Spans also go to the log (stderr) when this is true, whatever the OTLP settings below.
    trace_to_log: bool = False

    # Traces over OTLP/HTTP, from the standard OpenTelemetry variables (no FEATUREBUS_ prefix).
    # An endpoint set (or OTEL_TRACES_EXPORTER=otlp) turns the exporter on; none set, no exporter.
    # Headers, timeout, compression and certificates are read by the exporter itself
    # (OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, ...), the sampler by the SDK (OTEL_TRACES_SAMPLER).
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    # Overrides the service.name of every span (default featurebus-<service>).
    otel_service_name: str | None = Field(default=None, validation_alias="OTEL_SERVICE_NAME")
    otel_sdk_disabled: bool = Field(default=False, validation_alias="OTEL_SDK_DISABLED")

    # Prometheus /metrics of the services without an HTTP server of their own (dispatcher, scanner):
    # served on metrics_host:metrics_port when a port is set. The registry serves /metrics on its
    # REST port, inference and the indexer on their internal API's port (all without a token).
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # How often consumer lag and DLQ depth are read from Kafka for /metrics (0 turns it off).
    metrics_kafka_interval_s: float = 15.0

    # The shared secret of the internal APIs (inference's embed, the indexer's search): callers send
    # it as a bearer token, and a service without one refuses every internal request.
    # deploy/local generates one per data dir (DIR/internal-token, mode 0600).
    internal_token: SecretStr | None = None
    # The registry's internal secrets API (a plugin's granted secrets, for inference's workers).
    registry_internal_url: str = f"http://127.0.0.1:{DEFAULT_REGISTRY_INTERNAL_PORT}"

    @model_validator(mode="after")
    def _consistent(self) -> CommonSettings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            raise ValueError(
                f"FEATUREBUS_TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) exceeds "
                f"FEATUREBUS_TOPIC_REPLICATION_FACTOR ({self.topic_replication_factor}): no write could succeed"
            )
        self.public_s3()  # a malformed public endpoint fails at start, not at the first upload
        return self

    def public_s3(self) -> tuple[str, bool]:
        """(host:port, secure) that presigned URLs for users are signed for."""
        endpoint = (self.s3_public_endpoint or "").strip()
        if not endpoint:
            return self.s3_endpoint, self.s3_secure
        secure = self.s3_secure
        if "://" in endpoint:
            url = urlsplit(endpoint)
            if (
                url.scheme not in ("http", "https")
                or not url.hostname
                or url.username
                or url.path.strip("/")
                or url.query
            ):
                raise ValueError(
                    f"FEATUREBUS_S3_PUBLIC_ENDPOINT={endpoint!r}: give host:port or http(s)://host:port, without a path"
                )
            secure, endpoint = url.scheme == "https", url.netloc
        elif "/" in endpoint:
            raise ValueError(f"FEATUREBUS_S3_PUBLIC_ENDPOINT={endpoint!r}: give host:port, without a path")
        return endpoint, secure
