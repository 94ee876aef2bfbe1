"""Retriever executions wait here for their RetrievalAnswered, matched by request id."""

from __future__ import annotations

import asyncio

from featurebus.common.events import RetrievalAnswered

__all__ = ["Answers"]


class Answers:
    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[RetrievalAnswered]] = {}

    def expect(self, request_id: str) -> asyncio.Future[RetrievalAnswered]:
        future: asyncio.Future[RetrievalAnswered] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        return future

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def deliver(self, answer: RetrievalAnswered) -> None:
        """Resolve the waiting request; answers for other registry processes are ignored."""
        future = self._waiting.pop(answer.request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)
