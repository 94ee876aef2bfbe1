"""``?offset=&limit=`` of the listing routes: checked by FastAPI (a 422 names the parameter)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Query

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "Page", "fetch", "page"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# MongoDB's skip() takes a 64-bit integer; nobody pages this far, so a larger offset is a mistake.
MAX_OFFSET = 10**9


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int

    def view(self, results: list[Any], total: int) -> dict[str, Any]:
        return {"results": results, "total": total, "offset": self.offset, "limit": self.limit}


def page(
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="how many results to skip"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}"),
) -> Page:
    return Page(offset, limit)


async def fetch(find: Callable[[], Any], p: Page, sort: str = "+created_at") -> tuple[list[Any], int]:
    """One page of a beanie query (``find`` builds it afresh for the count) and the total."""
    total = await find().count()
    return await find().sort(sort, "+_id").skip(p.offset).limit(p.limit).to_list(), total
