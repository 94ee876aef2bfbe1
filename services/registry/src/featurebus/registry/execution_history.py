"""A retriever's history of executions, kept at its most recent ``keep`` for little work per execution.

Executions are written in batches: one that finds no write running is written at once; those
recorded while a write runs go together in the next (one insert for all of them). Counting what a
retriever keeps, and dropping the oldest past ``keep``, happens only every ``slack`` (a tenth of
``keep``, at least 1) executions of that retriever in this process, by the one write running (so
never twice at once), and the oldest go in one delete. So a retriever keeps at most
``keep + slack - 1`` executions between two prunes (plus those of one batch), and concurrent
executions do not each count and prune the same records (at 16 concurrent clients that bookkeeping
had cost the store more CPU than the query it records). The first
execution a process records of a retriever counts at once: one that has just restarted does not
wait for ``slack`` more.
"""

from __future__ import annotations

from featurebus.registry.records import RetrieverExecution
from featurebus.registry.tables import Table

__all__ = ["ExecutionHistory"]


class ExecutionHistory:
    """What this process knows of each retriever's history: executions waiting to be written, and
    executions since the last count."""

    def __init__(self) -> None:
        self._waiting: list[tuple[Table[RetrieverExecution], RetrieverExecution, int]] = []
        self._writing = False
        self._since: dict[str, int] = {}  # retriever id -> executions recorded since its last count

    async def record(self, table: Table[RetrieverExecution], record: RetrieverExecution, keep: int) -> None:
        """Write ``record`` (with those waiting beside it); then, when it is its retriever's turn,
        drop the retriever's oldest past ``keep``. While a write runs, ``record`` only waits in
        line: the running write's caller writes it next (and raises what that write raised)."""
        self._waiting.append((table, record, keep))
        if self._writing:
            return
        self._writing = True
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                for into in {id(t): t for t, _, _ in batch}.values():
                    await into.insert_many([r for t, r, _ in batch if t is into])
                recorded: dict[str, tuple[Table[RetrieverExecution], int, int]] = {}
                for into, done, most in batch:  # per retriever: its table, its executions, its keep
                    _, n, _ = recorded.get(done.retriever_id, (into, 0, most))
                    recorded[done.retriever_id] = (into, n + 1, most)
                for retriever, (into, n, most) in recorded.items():
                    await self._counted(into, retriever, n, most)
        finally:
            self._writing = False

    def forget(self, retriever: str) -> None:
        """The retriever is gone (deleted): nothing more to count for it."""
        self._since.pop(retriever, None)

    async def _counted(self, table: Table[RetrieverExecution], retriever: str, n: int, keep: int) -> None:
        """``n`` more executions of ``retriever`` are written: count and prune if it is its turn."""
        slack = max(1, keep // 10)
        since = self._since.get(retriever, slack - 1) + n  # a retriever not seen yet counts at once
        if since < slack:
            self._since[retriever] = since
            return
        self._since[retriever] = 0
        await self._prune(table, retriever, keep, slack)

    @staticmethod
    async def _prune(table: Table[RetrieverExecution], retriever: str, keep: int, slack: int) -> None:
        # The oldest ``slack`` and the total in one page: usually exactly the ones to drop.
        oldest, total = await table.page(0, slack, retriever_id=retriever)
        if total <= keep:
            return
        if len(oldest) < total - keep:
            oldest, _ = await table.page(0, total - keep, retriever_id=retriever)
        await table.delete_many([e.id for e in oldest[: total - keep]])
