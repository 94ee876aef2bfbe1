"""Start-up that waits for its dependencies instead of dying when one is a moment late."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["until_ready"]

log = logging.getLogger("featurebus.startup")
T = TypeVar("T")


async def until_ready(what: str, step: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
    """Run ``step`` until it succeeds, retrying with back-off for up to ``timeout`` seconds.

    Servers started together (``make run``, a compose file, a Kubernetes rollout) come up in any
    order; a service should wait for Kafka, MongoDB or S3 rather than exit on the first refusal.
    """
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            return await step()
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f}s: {exc!r}") from exc
            log.warning("waiting for %s (%r); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
