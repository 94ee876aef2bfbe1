"""Shared fixtures: an in-memory object store twin and a guard that keeps unit tests off the network."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from indexer_twins import MemoryObjectStore


@pytest.fixture
def memory_store() -> MemoryObjectStore:
    return MemoryObjectStore()


@pytest.fixture(autouse=True)
def no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A unit test that opens a network connection fails (integration tests are exempt)."""
    if request.node.get_closest_marker("integration") is None:

        def refuse(self: socket.socket, address: Any) -> None:
            raise AssertionError(f"unit test tried to connect to {address!r}: mark it `integration` or use a twin")

        monkeypatch.setattr(socket.socket, "connect", refuse)
        monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
