"""Fixtures shared by every test of the monorepo: a network guard and the real local stack."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A unit test that opens a network connection fails; `integration` and `e2e` tests are exempt.

    Unix sockets stay allowed: asyncio's event loop talks to itself through a socketpair.
    """
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("e2e"):
        yield
        return
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:
            return connect(self, address)
        raise AssertionError(f"unit test tried to connect to {address!r}: mark it `integration` or use a twin")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
