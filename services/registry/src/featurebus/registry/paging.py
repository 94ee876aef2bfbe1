"""``?offset=&limit=`` of the listing routes (checked by FastAPI: a 422 names the parameter), and
the page they answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_OFFSET", "Listing", "Page", "page"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# MongoDB's skip() takes a 64-bit integer; nobody pages this far, so a larger offset is a mistake.
MAX_OFFSET = 10**9

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    offset: int
    limit: int


def page(
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="how many results to skip"),
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"at most {MAX_LIMIT}"),
) -> Page:
    return Page(offset, limit)


class Listing(BaseModel, Generic[T]):
    """One page of a listing: its results (ordered by creation), how many there are in all, where it is."""

    results: list[T]
    total: int
    offset: int
    limit: int

    @classmethod
    def of(cls, results: list[T], total: int, p: Page) -> Listing[T]:
        return cls(results=results, total=total, offset=p.offset, limit=p.limit)
