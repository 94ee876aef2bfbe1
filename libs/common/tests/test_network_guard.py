"""STYLE.md #5: unit tests touch no network — the root conftest makes a connection attempt fail."""

from __future__ import annotations

import socket

import pytest


def test_a_unit_test_cannot_open_a_tcp_connection() -> None:
    with pytest.raises(AssertionError, match="mark it `integration`"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_unix_socketpairs_still_work_for_event_loops() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x")
        assert b.recv(1) == b"x"
