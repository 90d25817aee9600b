"""Capped counts: how many requests match a filter, counted no further than a cap.

The requests list shows "10,000+" once a filter matches more rows than dashboard.count_cap,
so it needs no exact total: the count stops at the cap's next row (a LIMIT inside the count),
and on a large store costs at most reading that many matching rows. The JSON API's count
(storage.query.stats.count_requests) stays exact.

A filter on feedback, scores or a dataset matches few of the requests, and the rows it needs
are found faster from those (small, indexed) tables than by testing every request: for each
such test the filter must pass (a positive one ANDed at the top of the tree), the count adds
the same test as `r.id IN (SELECT request_id ...)`, which changes no result but lets the
planner start from the rated, scored or listed requests. Not under a time range of a week or
less: the created_at index then reads no more than the range's rows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from storage import Store
from storage.errors import QueryError
from storage.query.filters import TIME_BOUNDS, Condition, compile_filter

# The related row sets that hold a minority of the requests: feedback, scores, dataset rows.
SMALL_SETS = ("feedback f", "scores s", "dataset_rows dr JOIN datasets d ON d.id = dr.dataset_id")
# A compiled positive test of a related row set: EXISTS (SELECT 1 FROM <set> WHERE <link> AND …).
EXISTS = re.compile(
    r"^EXISTS \(SELECT 1 FROM (?P<set>.+?) "
    r"WHERE (?P<alias>\w+)\.request_id = r\.id AND (?P<test>.+)\)$",
    re.DOTALL,
)
OUTER = re.compile(r"\br\.")
# A range this short reads its rows through the created_at index faster than a semijoin would
# collect every rated or scored request of the store (SQLite picks the semijoin regardless).
SHORT_RANGE = timedelta(days=7)
# A bound on the request's time as compile_filter writes it (`r.created_at >= ?` and the
# like, an equality bounding both ends; not `r.created_at IS NULL`), by its operator.
TIME_TESTS = {**TIME_BOUNDS, "r.created_at = ?": "="}


@dataclass(frozen=True, slots=True)
class CappedCount:
    """The matching rows up to `cap`, and whether there are more."""

    count: int
    capped: bool

    @property
    def text(self) -> str:
        """'1,234', or '10,000+' when capped."""
        return f"{self.count:,}{'+' if self.capped else ''}"


def _required_leaves(node: Any) -> Iterator[Any]:
    """Each one-test leaf that every matching row passes: the tests ANDed at the top."""
    if not isinstance(node, dict) or not node:
        return
    if {"left", "operator", "right"} <= node.keys():
        if isinstance(node["operator"], str) and node["operator"].lower() == "and":
            yield from _required_leaves(node["left"])
            yield from _required_leaves(node["right"])
        return
    for table, columns in node.items():
        if not isinstance(columns, dict):
            continue
        for column, ops in columns.items():
            if isinstance(ops, dict):
                for op, value in ops.items():
                    yield {table: {column: {op: value}}}


def _short_range(tests: list[Condition], now: float) -> bool:
    """Whether the required tests bound created_at to at most SHORT_RANGE (from its start to
    its end, or to `now` when it has none)."""
    low: datetime | None = None
    high: datetime | None = None
    for test in tests:
        op = TIME_TESTS.get(test.sql)
        if op is None:
            continue
        stamp = datetime.fromisoformat(str(test.params[0]))
        if op in (">", ">=", "="):
            low = stamp if low is None else max(low, stamp)
        if op in ("<", "<=", "="):
            high = stamp if high is None else min(high, stamp)
    if low is None:
        return False
    end = high if high is not None else datetime.fromtimestamp(now, UTC)
    return end - low <= SHORT_RANGE


def semijoins(tree: Any) -> list[Condition]:
    """`r.id IN (SELECT …)` for each positive feedback, score or dataset test every row
    matching `tree` passes; none under a time range of SHORT_RANGE or less (the tree must
    compile)."""
    found = []
    tests = [compile_filter(leaf) for leaf in _required_leaves(tree)]
    if _short_range(tests, time.time()):
        return []
    for test in tests:
        match = EXISTS.match(test.sql)
        if match is None or match["set"] not in SMALL_SETS or OUTER.search(match["test"]):
            continue
        alias = match["alias"]
        sql = f"r.id IN (SELECT {alias}.request_id FROM {match['set']} WHERE {match['test']})"
        found.append(Condition(sql, list(test.params)))
    return found


async def capped_count(store: Store, tree: Any, cap: int) -> CappedCount:
    """How many requests match the filter `tree`, counting at most `cap` + 1 of them."""
    if cap < 1:
        raise QueryError(f"the count cap must be at least 1, not {cap}")
    condition = compile_filter(tree)
    where, params = [condition.sql], list(condition.params)
    for hint in semijoins(tree):
        where.append(hint.sql)
        params += hint.params
    rows = await store.fetch(
        "SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM requests r "
        f"WHERE ({') AND ('.join(where)}) LIMIT ?) AS matching",
        [*params, cap + 1],
    )
    found = int(rows[0]["n"])
    return CappedCount(min(found, cap), found > cap)
