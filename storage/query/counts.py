"""Capped counts: how many requests match a filter, counted no further than a cap.

The requests list shows "10,000+" once a filter matches more rows than dashboard.count_cap,
so it needs no exact total: the count stops at the cap's next row (a LIMIT inside the count),
and on a large store costs at most reading that many matching rows. The JSON API's count
(storage.query.stats.count_requests) stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage import Store
from storage.errors import QueryError
from storage.query.filters import Condition


@dataclass(frozen=True, slots=True)
class CappedCount:
    """The matching rows up to `cap`, and whether there are more."""

    count: int
    capped: bool

    @property
    def text(self) -> str:
        """'1,234', or '10,000+' when capped."""
        return f"{self.count:,}{'+' if self.capped else ''}"


async def capped_count(store: Store, condition: Condition, cap: int) -> CappedCount:
    """How many requests match `condition`, counting at most `cap` + 1 of them."""
    if cap < 1:
        raise QueryError(f"the count cap must be at least 1, not {cap}")
    rows = await store.fetch(
        "SELECT COUNT(*) AS n FROM "
        f"(SELECT 1 AS one FROM requests r WHERE {condition.sql} LIMIT ?) AS matching",
        [*condition.params, cap + 1],
    )
    found = int(rows[0]["n"])
    return CappedCount(min(found, cap), found > cap)
