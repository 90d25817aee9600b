"""The read side of the rollups: which stats they can answer, and the rows they answer with.

storage/rollups.py keeps, per hour x model x outcome, what the stats add up (counts, latency
histograms, tokens, cost, ratings, scores). A filter is answered from them when it is an AND
of time bounds on `created_at` and tests of `model` and `outcome` alone, and the grouping is
by day, model and outcome. The compiled SQL itself is read (not the filter tree), so a test
of model or outcome runs unchanged over the rollup rows, whose `model` and `outcome` hold the
very values of the rows they add up.

Hours are split three ways. Hours strictly inside every time bound are covered: each of their
rows matches the bounds, so their rollups are exact (whole days from the daily histogram,
hours of the edge days from the hourly one). The hours of the bounds themselves, and every
hour up to the oldest row outside a dataset, are read from the rows: retention deletes
the rows before a time except those in datasets and leaves the rollups as they were, so
only hours after that row hold exactly the rows their rollups add up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from storage import Store
from storage.query.filters import Condition

# Dimensions the rollups key on, as SQL over a table with `period` (hour or day) or `hour`.
DIMENSIONS = ("day", "model", "outcome")
TOKEN = re.compile(r"\s*(r\.[a-z_]+|\?|<>|>=|<=|=|<|>|\(|\)|'\\'|[A-Za-z_]+|\d+)")
LOWER_BOUNDS = frozenset({">", ">="})
UPPER_BOUNDS = frozenset({"<", "<="})
# Every token a test of model and outcome alone compiles to (storage/query/filters.py).
KEY_TOKENS = frozenset(
    {"r.model", "r.outcome", "?", "(", ")", "=", "<>", "<", ">", "<=", ">=", "'\\'", "1"}
    | {"AND", "OR", "NOT", "IS", "NULL", "LIKE", "LOWER", "CAST", "AS", "TEXT", "ESCAPE"}
)
FRONTIER = (
    "SELECT r.created_at AS first FROM requests r WHERE NOT EXISTS "
    "(SELECT 1 FROM dataset_rows dr WHERE dr.request_id = r.id) ORDER BY r.created_at LIMIT 1"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """Stats from the rollups for the hours after `after` and before `before` (None: no end),
    where `keys` holds; from the rows matching `rest` for the other hours."""

    keys: Condition
    after: str
    before: str | None
    rest: Condition


def _tokens(sql: str) -> list[tuple[str, int, int]] | None:
    """(token, start, end) of each token of `sql`; None when something is not understood."""
    tokens, at = [], 0
    while at < len(sql.rstrip()):
        match = TOKEN.match(sql, at)
        if match is None:
            return None
        tokens.append((match.group(1), match.start(1), match.end(1)))
        at = match.end()
    return tokens


def _closing(tokens: Sequence[tuple[str, int, int]], start: int) -> int:
    """The index of the parenthesis closing the one at `start`, or -1."""
    depth = 0
    for i in range(start, len(tokens)):
        depth += {"(": 1, ")": -1}.get(tokens[i][0], 0)
        if depth == 0:
            return i
    return -1


def _conjuncts(tokens: Sequence[tuple[str, int, int]]) -> list[Sequence[tuple[str, int, int]]]:
    """`(a) AND (b) AND ...` as [a, b, ...] (each flattened again); anything else as itself."""
    parts, i = [], 0
    while True:
        end = _closing(tokens, i) if i < len(tokens) and tokens[i][0] == "(" else -1
        if end < 0:
            return [tokens]
        parts.append(tokens[i + 1 : end])
        if end + 1 == len(tokens):
            break
        if tokens[end + 1][0].upper() != "AND":
            return [tokens]
        i = end + 2
    if len(parts) == 1:
        return _conjuncts(parts[0])
    return [piece for part in parts for piece in _conjuncts(part)]


def _next_hour(hour: str) -> str | None:
    try:
        moment = datetime.strptime(hour, "%Y-%m-%dT%H") + timedelta(hours=1)
    except ValueError:
        return None
    return moment.strftime("%Y-%m-%dT%H")


def next_day(day: str) -> str:
    """The day after `day` (YYYY-MM-DD, the start of an hour plan() parsed)."""
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


async def plan(store: Store, condition: Condition, dimensions: Sequence[str]) -> Plan | None:
    """How the rollups answer `condition` grouped by `dimensions`; None when they cannot."""
    if not set(dimensions) <= set(DIMENSIONS):
        return None
    tokens = _tokens(condition.sql)
    if not tokens:
        return None
    keys: list[Condition] = []
    lower: list[str] = []
    upper: list[str] = []
    params = iter(condition.params)
    for part in _conjuncts(tokens):
        words = [t[0] for t in part]
        taken = [next(params, None) for t in words if t == "?"]
        if len(words) == 3 and words[0] == "r.created_at" and words[2] == "?":
            bound = taken[0]
            if not isinstance(bound, str) or len(bound) < 13:
                return None
            if words[1] in LOWER_BOUNDS:
                lower.append(bound[:13])
                continue
            if words[1] in UPPER_BOUNDS:
                upper.append(bound[:13])
                continue
            return None
        if not all(w.upper() in KEY_TOKENS or w in KEY_TOKENS for w in words):
            return None
        keys.append(Condition(condition.sql[part[0][1] : part[-1][2]], taken))
    if next(params, None) is not None:
        return None
    first = await store.fetch(FRONTIER)
    if not first or not isinstance(first[0]["first"], str):
        return None
    after = max([*lower, first[0]["first"][:13]])
    before = min(upper) if upper else None
    following = _next_hour(after)
    if following is None or (
        before is not None and (_next_hour(before) is None or following >= before)
    ):
        return None
    key = Condition(
        " AND ".join(f"({k.sql})" for k in keys) or "1 = 1", [p for k in keys for p in k.params]
    )
    edges = "r.created_at < ? AND substr(r.created_at, 1, 13) <= ?"
    edge_params: list[Any] = [following, after]
    if before is not None:
        edges = f"({edges}) OR (r.created_at >= ? AND substr(r.created_at, 1, 13) >= ?)"
        edge_params += [before, before]
    rest = Condition(f"({condition.sql}) AND ({edges})", [*condition.params, *edge_params])
    return Plan(key, after, before, rest)


def _select(columns: Sequence[str]) -> str:
    return "".join(f"{column} AS g{i}, " for i, column in enumerate(columns))


def _group_by(columns: Sequence[str], *extra: str) -> str:
    terms = [*columns, *extra]
    return f" GROUP BY {', '.join(terms)}" if terms else ""


def _columns(dimensions: Sequence[str], period: str, daily: bool = False) -> list[str]:
    """The dimensions as SQL over `r.{period}` (an hour, or a day when `daily`), model, outcome.
    A daily table's period is the day itself: grouping by the column, not an expression of
    it, spares SQLite computing it for every row."""
    day = f"r.{period}" if daily else f"substr(r.{period}, 1, 10)"
    sql = {"day": day, "model": "r.model", "outcome": "r.outcome"}
    return [sql[d] for d in dimensions]


def _range(column: str, after: str | None, before: str | None) -> tuple[str, list[Any]]:
    """`column` strictly between `after` and `before` (either may be None: no bound)."""
    clauses, params = [], []
    if after is not None:
        clauses.append(f"r.{column} > ?")
        params.append(after)
    if before is not None:
        clauses.append(f"r.{column} < ?")
        params.append(before)
    return " AND ".join(clauses) or "1 = 1", params


async def totals(store: Store, p: Plan, dimensions: Sequence[str]) -> list[dict[str, Any]]:
    """Per group: requests, errors, latency count and sum, tokens, cost, ratings."""
    columns = _columns(dimensions, "hour")
    hours, params = _range("hour", p.after, p.before)
    return await store.fetch(
        f"SELECT {_select(columns)}SUM(r.requests) AS requests, "
        "SUM(CASE WHEN r.outcome <> ? THEN r.requests ELSE 0 END) AS errors, "
        "SUM(r.latency_count) AS latency_count, SUM(r.latency_sum) AS latency_total, "
        "SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens, "
        "SUM(r.cost_usd) AS cost_usd, SUM(r.rated) AS rated, SUM(r.positive) AS positive "
        f"FROM rollup_hours r WHERE r.requests > 0 AND {hours} AND ({p.keys.sql})"
        + _group_by(columns),
        ["ok", *params, *p.keys.params],
    )


def pieces(p: Plan, hourly: str, daily: str) -> list[tuple[str, str | None, str | None]]:
    """(table, after, before) pieces of an hourly and a daily table whose `period` ranges
    together cover exactly the hours after..before: whole days from the daily table, the
    covered hours of the first and last day from the hourly one."""
    first_day = p.after[:10]
    last_day = None if p.before is None else p.before[:10]
    if last_day == first_day:
        return [(hourly, p.after, p.before)]
    found: list[tuple[str, str | None, str | None]] = [
        (hourly, p.after, next_day(first_day)),
        (daily, first_day, last_day),
    ]
    if last_day is not None and p.before is not None:
        # Hours of the last day: from its first hour (just after the day's own text).
        found.append((hourly, last_day, p.before))
    return found


async def buckets(store: Store, p: Plan, dimensions: Sequence[str]) -> list[dict[str, Any]]:
    """Per group and latency bucket: how many latencies and their sum (see pieces), in one
    row or, from the daily table, in one row per outcome (to be added up)."""
    rows: list[dict[str, Any]] = []
    for table, after, before in pieces(p, "rollup_hour_histogram", "rollup_day_histogram"):
        daily = table == "rollup_day_histogram"
        columns = _columns(dimensions, "period", daily=daily)
        periods, params = _range("period", after, before)
        sums = "SUM(r.count) AS count, SUM(r.total) AS total"
        group_by = _group_by(columns, "r.bucket")
        if daily and {"day", "model"} <= set(dimensions):
            # A daily row already is one day, model, outcome and bucket: the outcomes of a
            # day and model are few, cheaper added up by the caller than sorted into groups.
            sums, group_by = "r.count AS count, r.total AS total", ""
        rows += await store.fetch(
            f"SELECT {_select(columns)}r.bucket AS bucket, {sums} FROM {table} r "
            f"WHERE r.metric = ? AND r.count > 0 AND {periods} AND ({p.keys.sql})" + group_by,
            ["latency", *params, *p.keys.params],
        )
    return rows


async def score_values(
    store: Store, p: Plan, select: str, params: Sequence[Any], group_by: str
) -> list[dict[str, Any]]:
    """`select` (SQL over the score value rollups `r`: r.name, r.value, r.count, with
    `params`) grouped by `group_by`, over each piece of the covered hours (see pieces)."""
    rows: list[dict[str, Any]] = []
    for table, after, before in pieces(p, "rollup_hour_score_values", "rollup_day_score_values"):
        periods, period_params = _range("period", after, before)
        rows += await store.fetch(
            f"SELECT {select} FROM {table} r WHERE r.count > 0 AND {periods} "
            f"AND ({p.keys.sql}) GROUP BY {group_by}",
            [*params, *period_params, *p.keys.params],
        )
    return rows


async def scores(store: Store, p: Plan, dimensions: Sequence[str]) -> list[dict[str, Any]]:
    """Per group and score name: count, sum, smallest and largest value, from the per-value
    rollups (see pieces): whole days come from the daily table, fewer rows than every hour of
    rollup_scores. A value times its count is what adding it that many times gives (exactly
    for whole numbers and binary fractions), and nothing is ever taken away from it."""
    rows: list[dict[str, Any]] = []
    for table, after, before in pieces(p, "rollup_hour_score_values", "rollup_day_score_values"):
        columns = _columns(dimensions, "period", daily=table == "rollup_day_score_values")
        periods, params = _range("period", after, before)
        rows += await store.fetch(
            f"SELECT {_select(columns)}r.name AS name, SUM(r.count) AS count, "
            "SUM(r.value * r.count) AS total, MIN(r.value) AS low, MAX(r.value) AS high "
            f"FROM {table} r WHERE r.count > 0 AND {periods} AND ({p.keys.sql})"
            + _group_by(columns, "r.name"),
            [*params, *p.keys.params],
        )
    return rows


async def hour_sums(
    store: Store, p: Plan, columns: Sequence[str], sums: Sequence[str]
) -> list[dict[str, Any]]:
    """Per group of `columns` (SQL over rollup_hours `r`: r.hour, r.model), the sum of each
    rollup_hours column in `sums` over the covered hours, as g0.. and the column names."""
    hours, params = _range("hour", p.after, p.before)
    totals = ", ".join(f"SUM(r.{column}) AS {column}" for column in sums)
    return await store.fetch(
        f"SELECT {_select(columns)}{totals} FROM rollup_hours r "
        f"WHERE r.requests > 0 AND {hours} AND ({p.keys.sql})" + _group_by(columns),
        [*params, *p.keys.params],
    )
