"""The other test stack: genuine Kafka, MongoDB, MinIO and Qdrant images under Docker.

The integration and end-to-end tests run against the local stand-ins of ``stack.py`` (Tansu,
SecantusDB, SeaweedFS, Qdrant local mode) unless ``FEATUREBUS_TEST_STACK=containers``
(``make test-containers``): then the root conftest's ``local_stack`` fixture returns a
:class:`ContainerStack`, with the same interface as :class:`stack.LocalStack` (``data_dir``, the
``*_port`` attributes, ``env()``, ``start()``, ``stop()``, ``status()``), and the services talk to
the images production runs. Where no Docker engine answers, the fixture skips with
:func:`docker_unavailable`'s reason. Ray stays local in both modes.

Every container is a plain testcontainers ``DockerContainer``: the ``KafkaContainer`` module drives
Confluent's image (its start script lives in ``/etc/confluent``), not ``apache/kafka``, and
``MinioContainer`` imports the ``minio`` package and sets MinIO's deprecated key variables. Host
ports are chosen before start and bound on 127.0.0.1 only, so that Kafka can advertise its
listener up front and nothing listens on other interfaces; the host is this machine (a remote
``DOCKER_HOST`` is not supported).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stack import ACCESS_KEY, BUCKET, SECRET_KEY, free_port, kafka_answers, mongo_answers, s3_answers

from featurebus.common.settings import CommonSettings

__all__ = [
    "DEFAULT_DOCKER_HOST",
    "IMAGES",
    "MODES",
    "MODE_VARIABLE",
    "ContainerSpec",
    "ContainerStack",
    "docker_unavailable",
    "stack_mode",
]

MODE_VARIABLE = "FEATUREBUS_TEST_STACK"
MODES = ("local", "containers")
# Pinned as deploy/compose pins them: the containers run tests the images production runs.
IMAGES = {
    "kafka": "apache/kafka:4.1.0",
    "mongo": "mongo:7.0",
    "s3": "minio/minio:RELEASE.2025-09-07T16-13-09Z",
    "qdrant": "qdrant/qdrant:v1.19.0",
}
# Where docker-py looks when neither DOCKER_HOST, a docker context nor ~/.testcontainers.properties says.
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
MONGO_USER, MONGO_PASSWORD = "featurebus", "featurebus-mongo-secret"


def stack_mode(environ: Mapping[str, str]) -> str:
    """``local`` (the default) or ``containers``, from ``FEATUREBUS_TEST_STACK``; anything else is an error."""
    mode = environ.get(MODE_VARIABLE, "").strip().lower() or "local"
    if mode not in MODES:
        raise ValueError(f"{MODE_VARIABLE}={environ[MODE_VARIABLE]!r}: expected one of {', '.join(MODES)}")
    return mode


def docker_unavailable() -> str | None:
    """Why the containers stack cannot run here (naming the Docker host tried), or None if it can."""
    try:
        from testcontainers.core.docker_client import DockerClient, get_docker_host
    except ImportError as exc:
        return f"testcontainers is not installed ({exc}): run `make setup`"
    where = get_docker_host() or DEFAULT_DOCKER_HOST
    try:
        client = DockerClient()  # docker.from_env(): asks the engine its API version
        try:
            client.client.ping()
        finally:
            client.client.close()
    except Exception as exc:
        return f"no Docker engine reachable at {where}: {exc}"
    return None


@dataclass(frozen=True)
class ContainerSpec:
    """One container as started: image, environment, command and ``container port -> 127.0.0.1 port``."""

    name: str
    image: str
    ports: dict[int, int]
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] | None = None


@dataclass
class ContainerStack:
    """Kafka (KRaft), MongoDB, MinIO and a Qdrant server in containers, on 127.0.0.1 ports."""

    data_dir: Path
    kafka_port: int = field(default_factory=free_port)
    mongo_port: int = field(default_factory=free_port)
    s3_port: int = field(default_factory=free_port)
    qdrant_port: int = field(default_factory=free_port)
    _containers: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    def env(self) -> dict[str, str]:
        """The FEATUREBUS_* variables that point services at these containers: LocalStack's, plus
        the Qdrant server's URL (the indexer uses a server when it is set, local mode otherwise)."""
        return {
            "FEATUREBUS_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "FEATUREBUS_KAFKA_IDEMPOTENCE": "true",  # apache/kafka has idempotent producers (Tansu has not)
            "FEATUREBUS_MONGO_URI": (
                f"mongodb://{MONGO_USER}:{MONGO_PASSWORD}@127.0.0.1:{self.mongo_port}/?directConnection=true"
            ),
            "FEATUREBUS_S3_ENDPOINT": f"127.0.0.1:{self.s3_port}",
            "FEATUREBUS_S3_ACCESS_KEY": ACCESS_KEY,
            "FEATUREBUS_S3_SECRET_KEY": SECRET_KEY,
            "FEATUREBUS_S3_BUCKET": BUCKET,
            "FEATUREBUS_QDRANT_URL": f"http://127.0.0.1:{self.qdrant_port}",
            "FEATUREBUS_DATA_DIR": str(self.data_dir),
        }

    def specs(self) -> list[ContainerSpec]:
        kafka = {
            "CLUSTER_ID": "OohE8pY5RAasUxMnNvONhA",
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
            # Clients reach the broker through the published port, so that is what it advertises.
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{self.kafka_port}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
            "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            # A topic auto-created by a first publish gets the partitions the services assume (as compose does).
            "KAFKA_NUM_PARTITIONS": str(CommonSettings.model_fields["topic_partitions"].default),
        }
        mongo = {"MONGO_INITDB_ROOT_USERNAME": MONGO_USER, "MONGO_INITDB_ROOT_PASSWORD": MONGO_PASSWORD}
        minio = {"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY}
        return [
            ContainerSpec("kafka", IMAGES["kafka"], {9092: self.kafka_port}, kafka),
            ContainerSpec("mongo", IMAGES["mongo"], {27017: self.mongo_port}, mongo),
            ContainerSpec("s3", IMAGES["s3"], {9000: self.s3_port}, minio, ["server", "/data"]),
            ContainerSpec("qdrant", IMAGES["qdrant"], {6333: self.qdrant_port}, {"QDRANT__TELEMETRY_DISABLED": "true"}),
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Start every container (pulling its image if needed) and wait until each one answers."""
        from testcontainers.core.container import DockerContainer

        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        for spec in self.specs():
            if spec.name in self._containers:
                continue
            container = DockerContainer(spec.image, env=dict(spec.env))
            if spec.command:
                container.with_command(spec.command)
            for inside, outside in spec.ports.items():
                # with_bind_ports publishes on every interface; docker-py takes (address, port) for one.
                container.ports[f"{inside}/tcp"] = ("127.0.0.1", outside)  # type: ignore[assignment]
            self._containers[spec.name] = container  # tracked first: stop() removes a half-started one
            container.start()
        checks: dict[str, Callable[[], None]] = {
            "kafka": self._kafka_ok,
            "mongo": self._mongo_ok,
            "s3": self._s3_ok,
            "qdrant": self._qdrant_ok,
        }
        for name, check in checks.items():
            self._wait(name, check, timeout)

    def stop(self) -> list[str]:
        """Remove the containers (their logs kept in ``DIR/logs/<name>.log``); returns their names."""
        stopped = []
        for name, container in list(self._containers.items()):
            try:
                stdout, stderr = container.get_logs()
                (self.data_dir / "logs" / f"{name}.log").write_bytes(stdout + stderr)
            except Exception:  # the logs are a courtesy: removal must still happen
                pass
            container.stop()
            del self._containers[name]
            stopped.append(name)
        return stopped

    def status(self) -> dict[str, str | None]:
        """The id of each running container, or None."""
        ids: dict[str, str | None] = {}
        for spec in self.specs():
            container = self._containers.get(spec.name)
            started = container is not None and container.status != "not_started"
            ids[spec.name] = container.get_container_id()[:12] if started else None
        return ids

    # -- health checks ---------------------------------------------------------------------------

    def _wait(self, name: str, check: Callable[[], None], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                check()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    stdout, stderr = self._containers[name].get_logs()
                    tail = (stdout + stderr).decode(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"{name} ({IMAGES[name]}) did not answer within {timeout:.0f}s: {exc!r}; last log lines:\n{tail}"
                    ) from exc
                time.sleep(0.5)

    def _kafka_ok(self) -> None:
        kafka_answers(self.kafka_port)

    def _mongo_ok(self) -> None:
        mongo_answers(self.env()["FEATUREBUS_MONGO_URI"])

    def _s3_ok(self) -> None:
        s3_answers(self.s3_port)

    def _qdrant_ok(self) -> None:
        import httpx

        httpx.get(f"http://127.0.0.1:{self.qdrant_port}/readyz", timeout=3).raise_for_status()
