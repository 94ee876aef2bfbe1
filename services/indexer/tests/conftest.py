"""Shared fixtures: an in-memory object store twin."""

from __future__ import annotations

import pytest

from featurebus.common.objectstore_memory import MemoryObjectStore


@pytest.fixture
def memory_store() -> MemoryObjectStore:
    return MemoryObjectStore()
