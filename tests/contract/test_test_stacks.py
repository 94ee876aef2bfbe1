"""The two stacks the integration and e2e tests run on: the mode setting, the containers stack's
environment (the same variables as the local stack's, pointing where its containers are
published) and the skip where no Docker engine answers. None of this needs Docker; the
containers themselves run only under `make test-containers`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
import testcontainers.core.container
import yaml
from container_stack import IMAGES, ContainerStack, docker_unavailable, stack_mode
from stack import LocalStack

from featurebus.indexer.config import IndexerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICE_IN_COMPOSE = {"kafka": "kafka", "mongo": "mongo", "s3": "minio", "qdrant": "qdrant"}


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, "local"),
        ({"FEATUREBUS_TEST_STACK": ""}, "local"),
        ({"FEATUREBUS_TEST_STACK": "local"}, "local"),
        ({"FEATUREBUS_TEST_STACK": "containers"}, "containers"),
        ({"FEATUREBUS_TEST_STACK": " Containers "}, "containers"),
    ],
)
def test_the_mode_is_local_unless_containers_are_asked_for(environ: dict[str, str], mode: str) -> None:
    assert stack_mode(environ) == mode


def test_an_unknown_mode_is_an_error_not_the_default() -> None:
    with pytest.raises(ValueError, match=r"FEATUREBUS_TEST_STACK='docker'.*local, containers"):
        stack_mode({"FEATUREBUS_TEST_STACK": "docker"})


def test_the_containers_stack_sets_the_local_stacks_variables_and_the_qdrant_url(tmp_path: Path) -> None:
    local = LocalStack(tmp_path, kafka_port=1, mongo_port=2, s3_port=3).env()
    containers = ContainerStack(tmp_path).env()
    assert set(containers) == set(local) | {"FEATUREBUS_QDRANT_URL"}
    for same in ("FEATUREBUS_S3_ACCESS_KEY", "FEATUREBUS_S3_SECRET_KEY", "FEATUREBUS_S3_BUCKET", "FEATUREBUS_DATA_DIR"):
        assert containers[same] == local[same]


def test_the_services_settings_read_the_containers_where_they_are_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = ContainerStack(tmp_path, kafka_port=19101, mongo_port=19102, s3_port=19103, qdrant_port=19104)
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    settings = IndexerSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:19101"
    assert (urlsplit(settings.mongo_uri).hostname, urlsplit(settings.mongo_uri).port) == ("127.0.0.1", 19102)
    assert settings.s3_endpoint == "127.0.0.1:19103"
    assert settings.qdrant_url == "http://127.0.0.1:19104"  # a server, not local mode on data_dir/qdrant

    specs = {spec.name: spec for spec in stack.specs()}
    published = {name: set(spec.ports.values()) for name, spec in specs.items()}
    assert published == {"kafka": {19101}, "mongo": {19102}, "s3": {19103}, "qdrant": {19104}}
    # What the containers are told matches what the services are told.
    assert specs["kafka"].env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{settings.kafka_bootstrap}"
    assert specs["kafka"].env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    mongo = urlsplit(settings.mongo_uri)
    assert (mongo.username, mongo.password) == (
        specs["mongo"].env["MONGO_INITDB_ROOT_USERNAME"],
        specs["mongo"].env["MONGO_INITDB_ROOT_PASSWORD"],
    )
    assert (settings.s3_access_key, settings.s3_secret_key) == (
        specs["s3"].env["MINIO_ROOT_USER"],
        specs["s3"].env["MINIO_ROOT_PASSWORD"],
    )


class FakeContainer:
    """Stands in for testcontainers' DockerContainer: records what start() configures."""

    started: ClassVar[list[FakeContainer]] = []

    def __init__(self, image: str, env: dict[str, str]) -> None:
        self.image, self.env, self.ports, self.command, self.status = image, env, {}, None, "not_started"

    def with_command(self, command: list[str]) -> FakeContainer:
        self.command = command
        return self

    def start(self) -> FakeContainer:
        self.status = "running"
        FakeContainer.started.append(self)
        return self

    def get_container_id(self) -> str:
        return f"id-{self.image}"

    def get_logs(self) -> tuple[bytes, bytes]:
        return b"out\n", b"err\n"

    def stop(self) -> None:
        self.status = "removed"


def test_containers_are_published_on_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testcontainers.core.container, "DockerContainer", FakeContainer)
    monkeypatch.setattr(FakeContainer, "started", [])
    for probe in ("_kafka_ok", "_mongo_ok", "_s3_ok", "_qdrant_ok"):
        monkeypatch.setattr(ContainerStack, probe, lambda self: None)
    stack = ContainerStack(tmp_path)
    stack.start()
    assert sorted(c.image for c in FakeContainer.started) == sorted(IMAGES.values())
    bindings = {port: host for c in FakeContainer.started for port, host in c.ports.items()}
    assert bindings == {
        "9092/tcp": ("127.0.0.1", stack.kafka_port),
        "27017/tcp": ("127.0.0.1", stack.mongo_port),
        "9000/tcp": ("127.0.0.1", stack.s3_port),
        "6333/tcp": ("127.0.0.1", stack.qdrant_port),
    }
    assert all(status is not None for status in stack.status().values())
    assert sorted(stack.stop()) == ["kafka", "mongo", "qdrant", "s3"]
    assert all(c.status == "removed" for c in FakeContainer.started)
    assert (tmp_path / "logs" / "kafka.log").read_bytes() == b"out\nerr\n"
    assert stack.status() == dict.fromkeys(("kafka", "mongo", "s3", "qdrant"))


def test_images_are_pinned_as_deploy_compose_pins_them() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())["services"]
    pinned = {name: compose[service]["image"] for name, service in SERVICE_IN_COMPOSE.items()}
    assert pinned == IMAGES
    assert all(":" in image and not image.endswith(":latest") for image in IMAGES.values())


def test_without_a_docker_engine_the_reason_names_the_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    socket = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", socket)
    reason = docker_unavailable()
    assert reason is not None and socket in reason, reason


def test_the_fixture_skips_the_containers_run_without_a_docker_engine(tmp_path: Path) -> None:
    """The stack's tests are skipped, with the Docker error as the reason: never passed, never
    quietly run on the local stack instead."""
    socket = f"unix://{tmp_path}/no-docker.sock"
    env = {**os.environ, "FEATUREBUS_TEST_STACK": "containers", "DOCKER_HOST": socket}
    target = f"{Path(__file__).relative_to(ROOT)}::test_the_fixture_returns_the_stack_the_setting_names"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0 and "1 skipped" in summary and "passed" not in summary, run.stdout[-3000:]
    assert f"no Docker engine reachable at {socket}" in run.stdout, run.stdout[-3000:]


@pytest.mark.integration
def test_the_fixture_returns_the_stack_the_setting_names(local_stack: LocalStack | ContainerStack) -> None:
    expected = ContainerStack if stack_mode(os.environ) == "containers" else LocalStack
    assert type(local_stack) is expected
    env = local_stack.env()
    assert env["FEATUREBUS_KAFKA_BOOTSTRAP"] == f"127.0.0.1:{local_stack.kafka_port}"
    assert env["FEATUREBUS_S3_ENDPOINT"] == f"127.0.0.1:{local_stack.s3_port}"
    assert urlsplit(env["FEATUREBUS_MONGO_URI"]).port == local_stack.mongo_port
    assert ("FEATUREBUS_QDRANT_URL" in env) == (expected is ContainerStack)


def test_the_qdrant_congruence_tests_are_skipped_on_the_local_stack() -> None:
    """Local mode against a server needs a server: on the local stack every comparison is skipped
    with that reason (only the comparison's own check runs), never counted as passed."""
    module = "services/indexer/tests/test_qdrant_congruence.py"
    env = {k: v for k, v in os.environ.items() if k != "FEATUREBUS_TEST_STACK"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", module],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = run.stdout.strip().splitlines()[-1]
    assert run.returncode == 0 and "1 passed" in summary and "6 skipped" in summary, run.stdout[-3000:]
    assert "only with FEATUREBUS_TEST_STACK=containers" in run.stdout, run.stdout[-3000:]
