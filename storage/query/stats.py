"""Stats over a filter: requests, errors, latency percentiles, tokens, cost, feedback, scores.

From the rows, three queries: one pass over the requests grouped by the dimensions and a
latency histogram bucket, one over feedback, one over scores. Totals and groupings by day
and/or model come from groups by both, which SQLite streams from the requests_daily index
without sorting. When the filter and grouping are ones the rollups key on (time range, model,
outcome; day, model, outcome: storage/query/rollups.py), the covered hours come from the
rollups instead and only the hours at the edges from the rows; both give the same numbers.
Percentiles are estimated from the 10%-wide histogram buckets either way: exact for a bucket
holding one value, otherwise within the bucket's width.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from storage import Store
from storage.errors import QueryError
from storage.migrations import LATENCY_BOUNDS, LATENCY_BUCKET_SQL
from storage.query import rollups
from storage.query.filters import Condition

DIMENSIONS = {
    "day": "substr(r.created_at, 1, 10)",
    "model": "r.model",
    "response_model": "r.response_model",
    "user": "r.user_id",
    "outcome": "r.outcome",
    "path": "r.path",
}
DAILY = ("day", "model")
PROPERTY_PREFIX = "property:"
PERCENTILES = (50, 90, 95, 99)
BOUNDS = [float(b) for b in LATENCY_BOUNDS]

Key = tuple[Any, ...]
Rows = list[dict[str, Any]]
# How the rows of one query are added to the totals and (when grouped) to the group of each row:
# (rows, the row's group key, totals, groups by key or None).
Fold = Callable[[Rows, Callable[[dict[str, Any]], Key], "Group", "dict[Key, Group] | None"], None]
# The rows of one query, the columns holding each row's group key, and how they are added.
Source = tuple[Rows, list[str], Fold]


def check_dimensions(names: Sequence[str]) -> None:
    """QueryError unless each name is a dimension or `property:NAME` (at most one property)."""
    for name in names:
        named_property = name.startswith(PROPERTY_PREFIX) and len(name) > len(PROPERTY_PREFIX)
        if name not in DIMENSIONS and not named_property:
            allowed = ", ".join([*DIMENSIONS, f"{PROPERTY_PREFIX}NAME"])
            raise QueryError(f"cannot group by {name!r}; use {allowed}")
    if sum(name.startswith(PROPERTY_PREFIX) for name in names) > 1:
        raise QueryError("group by at most one property")
    if len(set(names)) != len(names):
        raise QueryError("each dimension may appear once")


def _number(value: Any) -> float:
    """Aggregates arrive as int, float or (PostgreSQL) Decimal; NULL sums are 0."""
    return 0.0 if value is None else float(value)


@dataclass(slots=True)
class Bucket:
    """Latencies in one histogram bucket: their count, sum and range."""

    index: int
    count: int
    total: float

    def value_at(self, rank: int) -> float:
        """The estimated `rank`-th (1-based) smallest latency in this bucket."""
        if self.count == 1 or self.index <= 0 or self.index >= len(BOUNDS):
            return self.total / self.count
        low, high = BOUNDS[self.index - 1], BOUNDS[self.index]
        return low + (high - low) * (rank - 0.5) / self.count


@dataclass(slots=True)
class Group:
    """Running totals for one group (or for everything)."""

    requests: int = 0
    errors: int = 0
    latency_count: int = 0
    latency_total: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    rated: int = 0
    positive: int = 0
    buckets: dict[int, Bucket] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)

    def add_requests(self, row: dict[str, Any]) -> None:
        count = int(row["requests"])
        self.requests += count
        self.errors += int(_number(row["errors"]))
        self.prompt_tokens += int(_number(row["prompt_tokens"]))
        self.completion_tokens += int(_number(row["completion_tokens"]))
        self.cost_usd += _number(row["cost_usd"])
        index = int(row["bucket"])
        if index >= 0:
            latency = _number(row["latency"])
            self.latency_count += count
            self.latency_total += latency
            bucket = self.buckets.setdefault(index, Bucket(index, 0, 0.0))
            bucket.count += count
            bucket.total += latency

    def add_totals(self, row: dict[str, Any]) -> None:
        """A rollup row: requests, errors, latencies, tokens, cost and ratings."""
        if row["requests"] is None:  # the totals of no rollup row at all
            return
        self.requests += int(row["requests"])
        self.errors += int(_number(row["errors"]))
        self.latency_count += int(_number(row["latency_count"]))
        self.latency_total += _number(row["latency_total"])
        self.prompt_tokens += int(_number(row["prompt_tokens"]))
        self.completion_tokens += int(_number(row["completion_tokens"]))
        self.cost_usd += _number(row["cost_usd"])
        self.add_feedback(row)

    def add_feedback(self, row: dict[str, Any]) -> None:
        self.rated += int(row["rated"])
        self.positive += int(_number(row["positive"]))

    def add_scores(self, row: dict[str, Any]) -> None:
        count, total = int(row["count"]), _number(row["total"])
        low, high = _number(row["low"]), _number(row["high"])
        seen = self.scores.get(row["name"])
        if seen is None:
            self.scores[row["name"]] = [count, total, low, high]
        else:
            seen[0] += count
            seen[1] += total
            seen[2] = min(seen[2], low)
            seen[3] = max(seen[3], high)

    def percentiles(self, ps: Sequence[int] = PERCENTILES) -> dict[str, float | None]:
        """The latency at each of `ps` (increasing; p50, p90, p95 and p99 unless told) from
        one walk up the histogram, as {"p50": ...}."""
        found = self._at_percentiles(ps)
        return {f"p{p}": v for p, v in zip(ps, found, strict=True)}

    def _at_percentiles(self, ps: Sequence[int]) -> list[float | None]:
        """The nearest-rank latency at each of `ps` (in increasing order)."""
        if not self.latency_count:
            return [None for _ in ps]
        found: list[float | None] = []
        buckets = [self.buckets[index] for index in sorted(self.buckets)]
        at = below = 0  # the bucket reached, and how many latencies the ones before it hold
        for p in ps:
            rank = max(1, math.ceil(p / 100 * self.latency_count))
            while at < len(buckets) and rank > below + buckets[at].count:
                below += buckets[at].count
                at += 1
            if at == len(buckets):
                raise AssertionError("rank beyond the histogram")
            found.append(round(buckets[at].value_at(rank - below), 3))
        return found

    def summary(self) -> dict[str, Any]:
        latency: dict[str, Any] = {
            "avg": round(self.latency_total / self.latency_count, 3) if self.latency_count else None
        }
        latency.update(self.percentiles())
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.errors / self.requests, 6) if self.requests else None,
            "latency_ms": latency,
            "tokens": {
                "prompt": self.prompt_tokens,
                "completion": self.completion_tokens,
                "total": self.prompt_tokens + self.completion_tokens,
            },
            "cost_usd": round(self.cost_usd, 9),
            "feedback": {
                "count": self.rated,
                "positive": self.positive,
                "negative": self.rated - self.positive,
                "positive_rate": round(self.positive / self.rated, 6) if self.rated else None,
            },
            "scores": {
                name: {
                    "count": int(count),
                    "avg": round(total / count, 6),
                    "min": low,
                    "max": high,
                }
                for name, (count, total, low, high) in sorted(self.scores.items())
            },
        }


@dataclass(slots=True)
class Grouping:
    """The SQL for grouping dimensions: select list, GROUP BY terms and a property join."""

    names: list[str]
    columns: list[str]
    join: str = ""
    params: list[Any] = field(default_factory=list)

    @classmethod
    def of(cls, dimensions: Sequence[str]) -> Grouping:
        names, columns, join, params = [], [], "", []
        for dimension in dimensions:
            if dimension.startswith(PROPERTY_PREFIX):
                join = "LEFT JOIN request_properties gp ON gp.request_id = r.id AND gp.key = ?"
                params.append(dimension.removeprefix(PROPERTY_PREFIX).lower())
                columns.append("gp.value")
            else:
                columns.append(DIMENSIONS[dimension])
            names.append(dimension)
        return cls(names, columns, join, params)

    def select(self) -> str:
        return "".join(f"{column} AS g{i}, " for i, column in enumerate(self.columns))

    def group_by(self, *extra: str) -> str:
        terms = [*self.columns, *extra]
        return f" GROUP BY {', '.join(terms)}" if terms else ""

    def key(self, row: dict[str, Any]) -> Key:
        return tuple(row[f"g{i}"] for i in range(len(self.columns)))


async def _from_rows(
    store: Store, condition: Condition, dimensions: Sequence[str], narrow: bool = False
) -> list[Source]:
    """The stats sources read from the rows. `narrow`: the condition picks a few hours, so
    feedback and scores are found from the requests (CROSS JOIN keeps SQLite to that order)
    rather than the requests from every rating and score."""
    # Day and model (and totals) are rolled up from groups by both, which SQLite reads in
    # the order of the requests_daily index instead of sorting every row.
    daily = set(dimensions) <= set(DAILY)
    grouping = Grouping.of(DAILY if daily else dimensions)
    params = [*grouping.params, *condition.params]
    feedback_from = f"feedback f JOIN requests r ON r.id = f.request_id {grouping.join}"
    scores_from = f"scores s JOIN requests r ON r.id = s.request_id {grouping.join}"
    feedback_where = scores_where = f"WHERE {condition.sql}"
    if narrow:
        # A day that is not the requests_daily index's own expression: SQLite then reads
        # the few hours by time instead of that whole index in its order.
        grouping.columns = [f"{c} || ''" if c == DIMENSIONS["day"] else c for c in grouping.columns]
        feedback_from = f"requests r CROSS JOIN feedback f {grouping.join}"
        scores_from = f"requests r CROSS JOIN scores s {grouping.join}"
        feedback_where = f"WHERE f.request_id = r.id AND ({condition.sql})"
        scores_where = f"WHERE s.request_id = r.id AND ({condition.sql})"
    requests = await store.fetch(
        f"SELECT {grouping.select()}{LATENCY_BUCKET_SQL} AS bucket, COUNT(*) AS requests, "
        "SUM(CASE WHEN r.outcome <> ? THEN 1 ELSE 0 END) AS errors, SUM(r.latency_ms) AS latency, "
        "SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens, "
        f"SUM(r.cost_usd) AS cost_usd FROM requests r {grouping.join} WHERE {condition.sql}"
        + grouping.group_by(LATENCY_BUCKET_SQL),
        ["ok", *params],
    )
    feedback = await store.fetch(
        f"SELECT {grouping.select()}COUNT(*) AS rated, SUM(f.rating) AS positive "
        f"FROM {feedback_from} {feedback_where}" + grouping.group_by(),
        params,
    )
    scores = await store.fetch(
        f"SELECT {grouping.select()}s.name AS name, COUNT(*) AS count, SUM(s.value) AS total, "
        "MIN(s.value) AS low, MAX(s.value) AS high "
        f"FROM {scores_from} {scores_where}" + grouping.group_by("s.name"),
        params,
    )

    names = [f"g{grouping.names.index(name)}" for name in dimensions]
    return [
        (requests, names, _adding(Group.add_requests)),
        (feedback, names, _adding(Group.add_feedback)),
        (scores, names, _adding(Group.add_scores)),
    ]


async def _from_rollups(
    store: Store, plan: rollups.Plan, dimensions: Sequence[str]
) -> list[Source]:
    names = [f"g{i}" for i in range(len(dimensions))]
    return [
        (await rollups.totals(store, plan, dimensions), names, _adding(Group.add_totals)),
        (await rollups.buckets(store, plan, dimensions), names, _add_buckets),
        (await rollups.scores(store, plan, dimensions), names, _adding(Group.add_scores)),
    ]


def _key(names: Sequence[str]) -> Callable[[dict[str, Any]], Key]:
    """The group key of a row: its values of the columns `names`, as a tuple."""
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    if not names:
        return lambda row: ()
    key: Callable[[dict[str, Any]], Key] = operator.itemgetter(*names)
    return key


def _group(groups: dict[Key, Group], key: Key) -> Group:
    group = groups.get(key)
    if group is None:
        group = groups[key] = Group()
    return group


def _adding(add: Callable[[Group, dict[str, Any]], None]) -> Fold:
    """A fold adding each row with `add`: to the totals, and to its group."""

    def fold(
        rows: Rows,
        key: Callable[[dict[str, Any]], Key],
        totals: Group,
        groups: dict[Key, Group] | None,
    ) -> None:
        for row in rows:
            add(totals, row)
            if groups is not None:
                add(_group(groups, key(row)), row)

    return fold


def _add_buckets(
    rows: Rows, key: Callable[[dict[str, Any]], Key], totals: Group, groups: dict[Key, Group] | None
) -> None:
    """Rollup histogram rows (how many latencies fell in a bucket, and their sum): tens of
    thousands over months by day and model, so added inline, and a group's rows come one
    after another (its group is looked up again only when the key changes)."""
    whole = totals.buckets
    last: Key | None = None
    mine: dict[int, Bucket] = whole
    for row in rows:
        index, count, total = int(row["bucket"]), int(row["count"]), float(row["total"])
        bucket = whole.get(index)
        if bucket is None:
            whole[index] = Bucket(index, count, total)
        else:
            bucket.count += count
            bucket.total += total
        if groups is None:
            continue
        if (found := key(row)) != last:
            last, mine = found, _group(groups, found).buckets
        bucket = mine.get(index)
        if bucket is None:
            mine[index] = Bucket(index, count, total)
        else:
            bucket.count += count
            bucket.total += total


async def request_stats(
    store: Store, condition: Condition, dimensions: Sequence[str] = ()
) -> dict[str, Any]:
    """Totals over the rows matching `condition`, and per group when `dimensions` are given."""
    check_dimensions(dimensions)
    plan = await rollups.plan(store, condition, dimensions)
    if plan is None:
        sources = await _from_rows(store, condition, dimensions)
    else:
        sources = await _from_rollups(store, plan, dimensions)
        sources += await _from_rows(store, plan.rest, dimensions, narrow=True)
    totals = Group()
    groups: dict[Key, Group] | None = {} if dimensions else None
    for rows, names, fold in sources:
        fold(rows, _key(names), totals, groups)
    result: dict[str, Any] = totals.summary()
    whole, by_group = await _session_ratings(store, condition, dimensions)
    result["session_feedback"] = whole
    if groups is not None:
        result["groups"] = [
            {
                "key": dict(zip(dimensions, key, strict=True)),
                **group.summary(),
                "session_feedback": by_group.get(key, _rated()),
            }
            for key, group in sorted(groups.items(), key=lambda item: _sort_key(item[0]))
        ]
    return result


def _rated(count: int = 0, positive: int = 0) -> dict[str, Any]:
    return {
        "count": count,
        "positive": positive,
        "negative": count - positive,
        "positive_rate": round(positive / count, 6) if count else None,
    }


async def _session_ratings(
    store: Store, condition: Condition, dimensions: Sequence[str]
) -> tuple[dict[str, Any], dict[Key, dict[str, Any]]]:
    """Rated sessions with a matching request: in all (each session once), and per group of
    `dimensions` (each session counted once a group)."""
    # A session's one rating (session_id is session_feedback's key) counts when any of its
    # requests matches: SQLite stops at the first one instead of reading every request of it.
    whole = await store.fetch(
        "SELECT COUNT(*) AS rated, SUM(CASE WHEN sf.rating = 1 THEN 1 ELSE 0 END) AS positive "
        "FROM session_feedback sf WHERE EXISTS (SELECT 1 FROM requests r "
        f"WHERE r.session_id = sf.session_id AND ({condition.sql}))",
        condition.params,
    )
    rated = _rated(int(whole[0]["rated"]), int(whole[0]["positive"] or 0))
    if not dimensions:
        return rated, {}
    grouping = Grouping.of(dimensions)
    rows = await store.fetch(
        f"SELECT {grouping.select()}COUNT(DISTINCT sf.session_id) AS rated, "
        "COUNT(DISTINCT CASE WHEN sf.rating = 1 THEN sf.session_id END) AS positive "
        "FROM session_feedback sf JOIN requests r ON r.session_id = sf.session_id "
        f"{grouping.join} WHERE {condition.sql}" + grouping.group_by(),
        [*grouping.params, *condition.params],
    )
    return rated, {
        grouping.key(row): _rated(int(row["rated"]), int(row["positive"] or 0)) for row in rows
    }


def _sort_key(key: Key) -> tuple[tuple[bool, str], ...]:
    """Groups in key order; a missing value (no user, no property) sorts last."""
    return tuple((part is None, "" if part is None else str(part)) for part in key)


async def count_requests(store: Store, condition: Condition) -> int:
    """How many requests match `condition`."""
    rows = await store.fetch(
        f"SELECT COUNT(*) AS n FROM requests r WHERE {condition.sql}", condition.params
    )
    return int(rows[0]["n"])
