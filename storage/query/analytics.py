"""What the dashboard's analytics need beyond request_stats: ratings over time from the rated
rows alone (by day or hour, split by a dimension's most rated values), score distributions,
top values, the most recent negative feedback, and the property keys and score names in the
store.

Every value, property key and score name is a bound parameter, and every list is bounded by a
limit: a store with a million rows and thousands of distinct users still answers a short list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storage import Store
from storage.errors import QueryError
from storage.query.filters import ALL, Condition
from storage.query.stats import DIMENSIONS, PROPERTY_PREFIX, Grouping, check_dimensions

# Top lists group by one of these, or by `property:NAME`.
TOP_COLUMNS = {"model": "r.model", "user": "r.user_id", "session": "r.session_id"}
MAX_LIMIT = 100
BINS = 10
# Integer-valued scores spanning at most this many values get one bin per value (1-5 stars).
MAX_INTEGER_BINS = 20


def _bounded(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be 1-{MAX_LIMIT}, got {limit}")
    return limit


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


async def distinct_keys(
    store: Store, table: Literal["properties", "scores"], limit: int = 50
) -> list[str]:
    """Property keys (`table="properties"`) or score names (`"scores"`) in the store, sorted.

    A loose index scan: one index probe per distinct key, however many rows hold each.
    """
    column, source = {
        "properties": ("key", "request_properties"),
        "scores": ("name", "scores"),
    }[table]
    rows = await store.fetch(
        f"WITH RECURSIVE k(v) AS (SELECT MIN({column}) FROM {source} UNION ALL "
        f"SELECT (SELECT MIN({column}) FROM {source} WHERE {column} > k.v) FROM k "
        "WHERE k.v IS NOT NULL) SELECT v FROM k WHERE v IS NOT NULL LIMIT ?",
        [_bounded(limit)],
    )
    return [str(row["v"]) for row in rows]


def _top_source(dimension: str) -> tuple[str, str, list[Any]]:
    """The grouped expression, the join it needs and the join's parameters."""
    if dimension.startswith(PROPERTY_PREFIX) and len(dimension) > len(PROPERTY_PREFIX):
        key = dimension.removeprefix(PROPERTY_PREFIX).lower()
        return (
            "tp.value",
            "JOIN request_properties tp ON tp.request_id = r.id AND tp.key = ?",
            [key],
        )
    if dimension not in TOP_COLUMNS:
        allowed = ", ".join([*TOP_COLUMNS, f"{PROPERTY_PREFIX}NAME"])
        raise QueryError(f"cannot list top values of {dimension!r}; use {allowed}")
    return TOP_COLUMNS[dimension], "", []


def joined(source: str, link: str, condition: Condition) -> str:
    """`FROM source` restricted to rows whose request matches `condition`.

    Without a condition the join is left out: every feedback, score and property row belongs
    to a logged request (they are deleted with it), and the source's own index answers alone.
    """
    if condition.sql == ALL.sql:
        return f"FROM {source} WHERE 1 = 1"
    return f"FROM {source} JOIN requests r ON r.id = {link} WHERE ({condition.sql})"


async def top_values(
    store: Store, condition: Condition, dimension: str, limit: int = 10
) -> list[dict[str, Any]]:
    """The most frequent values of `dimension` among the matching rows: value and requests,
    most requests first (ties by value). Rows without a value are left out.

    Counts only, so an index answers them: (model, created_at), (user_id, created_at) and
    (key, value) of the properties.
    """
    column, join, params = _top_source(dimension)
    if join and condition.sql == ALL.sql:
        source = "FROM request_properties tp WHERE tp.key = ?"
    else:
        source = f"FROM requests r {join} WHERE ({condition.sql})"
        params = [*params, *condition.params]
    rows = await store.fetch(
        f"SELECT {column} AS value, COUNT(*) AS requests {source} AND {column} IS NOT NULL "
        f"GROUP BY {column} ORDER BY COUNT(*) DESC, {column} LIMIT ?",
        [*params, _bounded(limit)],
    )
    return [{"value": row["value"], "requests": int(row["requests"])} for row in rows]


@dataclass(slots=True)
class Histogram:
    """One score name's bins: a bin per value for a small integer range, else BINS equal-width
    bins [low, high) from min to max (the last one closed), or one bin for a single value."""

    low: float
    high: float
    integral: bool

    def edges(self) -> list[float]:
        if self.integral:
            return [float(v) for v in range(int(self.low), int(self.high) + 2)]
        if self.high == self.low:
            return [self.low, self.high]
        return [self.low + (self.high - self.low) * i / BINS for i in range(BINS + 1)]

    def index_sql(self) -> tuple[str, list[Any]]:
        """SQL for a value's bin: the inner edges at or below it (for integers: the value)."""
        if self.integral:
            return "s.value", []
        inner = self.edges()[1:-1]
        if not inner:
            return "0", []
        parts = " + ".join(
            "CASE WHEN s.value >= CAST(? AS DOUBLE PRECISION) THEN 1 ELSE 0 END" for _ in inner
        )
        return f"({parts})", inner

    def bins(self, counts: dict[int, int]) -> list[dict[str, Any]]:
        edges = self.edges()
        out = []
        for i in range(len(edges) - 1):
            low, high = edges[i], edges[i + 1]
            key = int(low) if self.integral else i
            if self.integral:
                label, high = str(int(low)), low
            elif self.high == self.low:
                label = f"{low:.4g}"
            else:
                label = f"{low:.4g} to {high:.4g}"
            out.append({"label": label, "low": low, "high": high, "count": counts.get(key, 0)})
        return out


async def score_distributions(
    store: Store, condition: Condition, limit: int = 12
) -> list[dict[str, Any]]:
    """Per score name among the matching rows, most scored first: count, avg, min, max and a
    histogram (see Histogram). Two queries, whatever the number of names: the figures, then
    every name's bins in one pass with each name's edges as parameters."""
    names = await store.fetch(
        "SELECT s.name AS name, COUNT(*) AS count, SUM(s.value) AS total, MIN(s.value) AS low, "
        "MAX(s.value) AS high, SUM(CASE WHEN s.value <> ROUND(s.value) THEN 1 ELSE 0 END) "
        f"AS fractional {joined('scores s', 's.request_id', condition)} "
        "GROUP BY s.name ORDER BY COUNT(*) DESC, s.name LIMIT ?",
        [*condition.params, _bounded(limit)],
    )
    if not names:
        return []
    shapes = {}
    for row in names:
        low, high = _number(row["low"]), _number(row["high"])
        integral = not int(_number(row["fractional"])) and high - low < MAX_INTEGER_BINS
        shapes[row["name"]] = Histogram(low, high, integral)
    cases, case_params = [], []
    for name, shape in shapes.items():
        sql, params = shape.index_sql()
        cases.append(f"WHEN ? THEN {sql}")
        case_params += [name, *params]
    marks = ", ".join("?" for _ in shapes)
    rows = await store.fetch(
        f"SELECT s.name AS name, CASE s.name {' '.join(cases)} END AS bin, COUNT(*) AS count "
        f"{joined('scores s', 's.request_id', condition)} AND s.name IN ({marks}) "
        "GROUP BY s.name, bin",
        [*case_params, *condition.params, *shapes],
    )
    counts: dict[str, dict[int, int]] = {name: {} for name in shapes}
    for row in rows:
        counts[row["name"]][int(_number(row["bin"]))] = int(row["count"])
    return [
        {
            "name": row["name"],
            "count": int(row["count"]),
            "avg": round(_number(row["total"]) / int(row["count"]), 6),
            "min": _number(row["low"]),
            "max": _number(row["high"]),
            "bins": shapes[row["name"]].bins(counts[row["name"]]),
        }
        for row in names
    ]


async def recent_negatives(
    store: Store, condition: Condition, limit: int = 10
) -> list[dict[str, Any]]:
    """The latest thumbs-down among the matching rows, most recently rated first.

    Each: id, created_at, model, user_id, rated_at, the comment given with the rating, and the
    first words of the prompt and of the answer (kept on the row, so no body is read).
    """
    rows = await store.fetch(
        "SELECT r.id AS id, r.created_at AS created_at, r.model AS model, r.user_id AS user_id, "
        "r.prompt_preview AS prompt_preview, r.answer_preview AS answer_preview, "
        "f.updated_at AS rated_at, f.comment AS comment FROM feedback f "
        f"JOIN requests r ON r.id = f.request_id WHERE f.rating = 0 AND ({condition.sql}) "
        "ORDER BY f.updated_at DESC, r.id DESC LIMIT ?",
        [*condition.params, _bounded(limit)],
    )
    return [dict(row) for row in rows]


async def rated_over_time(
    store: Store, condition: Condition, dimensions: Sequence[str]
) -> list[dict[str, Any]]:
    """Rated and positive requests per group of `dimensions` (a time bucket, and optionally a
    model, user or property), in request_stats' group shape: {"key", "feedback"}.

    The same numbers as request_stats' groups, read from the rated rows alone: a split by a
    property or a user has no rollup, and this reads the feedback (a few percent of the rows)
    instead of every request.
    """
    check_dimensions(dimensions)
    grouping = Grouping.of(dimensions)
    rows = await store.fetch(
        f"SELECT {grouping.select()}COUNT(*) AS rated, SUM(f.rating) AS positive "
        f"FROM feedback f JOIN requests r ON r.id = f.request_id {grouping.join} "
        f"WHERE {condition.sql}" + grouping.group_by(),
        [*grouping.params, *condition.params],
    )
    return [
        {
            "key": dict(zip(dimensions, grouping.key(row), strict=True)),
            "feedback": {"count": int(row["rated"]), "positive": int(_number(row["positive"]))},
        }
        for row in rows
    ]


# The time buckets of rated_split: a day as request_stats' "day", or an hour.
BUCKETS = {"hour": "substr(r.created_at, 1, 13)", "day": DIMENSIONS["day"]}
TOP_SPLIT = 6


async def rated_split(
    store: Store, condition: Condition, unit: str, by: str | None = None, top: int = TOP_SPLIT
) -> list[dict[str, Any]]:
    """Rated and positive requests per hour or day (`unit`), split by `by` (a dimension or
    `property:NAME`): its `top` most rated values, each its own group, and the rest together.

    Groups as rated_over_time's, {"key": {unit: bucket, by: value}, "feedback", "rest"}, where
    the rest's value is None and "rest" true; a row without a value is None with "rest" false.
    However many users or property values the rated rows hold, the answer is at most
    buckets x (top + 2) groups.
    """
    if unit not in BUCKETS:
        raise QueryError(f"bucket by {', '.join(BUCKETS)}, not {unit!r}")
    source = "FROM feedback f JOIN requests r ON r.id = f.request_id"
    if by is None:
        rows = await store.fetch(
            f"SELECT {BUCKETS[unit]} AS g_bucket, COUNT(*) AS rated, SUM(f.rating) AS positive "
            f"{source} WHERE {condition.sql} GROUP BY g_bucket",
            condition.params,
        )
        return [_split_group(row, unit, None) for row in rows]
    check_dimensions([by])
    grouping = Grouping.of([by])
    # The rated rows are read once (a CTE used twice is materialized): the top values are
    # ranked from them, then every row is counted under its value or as the rest.
    ranked = "SELECT v FROM top"
    rows = await store.fetch(
        f"WITH rated AS (SELECT {BUCKETS[unit]} AS b, {grouping.columns[0]} AS v, "
        f"f.rating AS rating {source} {grouping.join} WHERE {condition.sql}), "
        "top AS (SELECT v FROM rated WHERE v IS NOT NULL GROUP BY v "
        "ORDER BY COUNT(*) DESC, v LIMIT ?) "
        f"SELECT b AS g_bucket, CASE WHEN v IN ({ranked}) THEN v END AS g_value, "
        f"CASE WHEN v IS NULL OR v IN ({ranked}) THEN 0 ELSE 1 END AS g_rest, "
        "COUNT(*) AS rated, SUM(rating) AS positive FROM rated GROUP BY g_bucket, g_value, g_rest",
        [*grouping.params, *condition.params, _bounded(top)],
    )
    return [_split_group(row, unit, by) for row in rows]


def _split_group(row: dict[str, Any], unit: str, by: str | None) -> dict[str, Any]:
    key = {unit: row["g_bucket"]}
    if by is not None:
        key[by] = row["g_value"]
    return {
        "key": key,
        "feedback": {"count": int(row["rated"]), "positive": int(_number(row["positive"]))},
        "rest": by is not None and bool(int(row["g_rest"])),
    }
