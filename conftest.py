"""Fixtures shared by every test of the monorepo: the real local stack for integration tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "deploy" / "local"))
from stack import LocalStack, free_port


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka, MongoDB and S3 on free loopback ports, for this test session only."""
    stack = LocalStack(
        tmp_path_factory.mktemp("stack"), kafka_port=free_port(), mongo_port=free_port(), s3_port=free_port()
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
