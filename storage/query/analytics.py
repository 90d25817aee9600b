"""What the dashboard's analytics need beyond request_stats: ratings over time from the rated
rows alone (by day or hour, split by a dimension's most rated values), score distributions,
top values, the most recent negative feedback, and the property keys and score names in the
store.

Every value, property key and score name is a bound parameter, and every list is bounded by a
limit: a store with a million rows and thousands of distinct users still answers a short list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storage import Store
from storage.errors import QueryError
from storage.query import rollups
from storage.query.filters import ALL, Condition, Parts, parts
from storage.query.stats import DIMENSIONS, PROPERTY_PREFIX, Grouping, check_dimensions
from storage.rollups import RATED_COLUMNS

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


def _top_column(dimension: str) -> str:
    """The requests column of a top list's dimension (properties have property_values)."""
    if dimension not in TOP_COLUMNS:
        allowed = ", ".join([*TOP_COLUMNS, f"{PROPERTY_PREFIX}NAME"])
        raise QueryError(f"cannot list top values of {dimension!r}; use {allowed}")
    return TOP_COLUMNS[dimension]


def joined(source: str, link: str, condition: Condition) -> str:
    """`FROM source` restricted to rows whose request matches `condition`.

    Without a condition the join is left out: every feedback, score and property row belongs
    to a logged request (they are deleted with it), and the source's own index answers alone.
    """
    if condition.sql == ALL.sql:
        return f"FROM {source} WHERE 1 = 1"
    return f"FROM {source} JOIN requests r ON r.id = {link} WHERE ({condition.sql})"


# A condition on these columns alone leaves the (user_id, created_at) index covering.
USER_INDEX_COLUMNS = frozenset({"created_at", "user_id"})
# The request columns rollup_rated holds, under their own names (migration 012).
RATED_ROW_COLUMNS = frozenset(RATED_COLUMNS)
ROLLUP_RATED = "FROM rollup_rated r"
REQUEST_COLUMN = re.compile(r"\br\.([a-z_]+)")


async def top_values(
    store: Store, condition: Condition, dimension: str, limit: int = 10
) -> list[dict[str, Any]]:
    """The most frequent values of `dimension` among the matching rows: value and requests,
    most requests first (ties by value). Rows without a value are left out.

    Properties (`property:NAME`) are property_values'. Models come from the rollups when
    they answer the condition (plus its edge hours from the rows). Otherwise counts only, so
    an index answers them: (model, created_at) and (user_id, created_at).
    """
    limit = _bounded(limit)
    if dimension.startswith(PROPERTY_PREFIX) and len(dimension) > len(PROPERTY_PREFIX):
        return await property_values(
            store, condition, dimension.removeprefix(PROPERTY_PREFIX).lower(), limit
        )
    column = _top_column(dimension)
    if dimension == "model":
        plan = await rollups.plan(store, condition, ["model"])
        if plan is not None:
            return await _top_models(store, plan, limit)
    grouped = column
    source, params = f"FROM requests r WHERE ({condition.sql})", condition.params
    if dimension == "user" and not set(REQUEST_COLUMN.findall(condition.sql)) <= (
        USER_INDEX_COLUMNS
    ):
        # Walking the user index in order would read the row of every request to test
        # the condition; an expression keeps SQLite to the condition's own index.
        grouped = f"{column} || ''"
    rows = await store.fetch(
        f"SELECT {grouped} AS value, COUNT(*) AS requests {source} AND {column} IS NOT NULL "
        f"GROUP BY {grouped} ORDER BY COUNT(*) DESC, {grouped} LIMIT ?",
        [*params, limit],
    )
    return [{"value": row["value"], "requests": int(row["requests"])} for row in rows]


# A property's rows with one more property equal to a value, linked by request id.
ALSO_EQUALS = (
    " AND EXISTS (SELECT 1 FROM request_properties op WHERE op.request_id = {link} "
    "AND op.key = ? AND op.value = ?)"
)


def property_tests(
    found: Parts, alias: str, properties: Sequence[tuple[str, str]]
) -> tuple[str, list[Any]]:
    """The tests on property rows `alias` for a condition of time bounds and properties
    equal to values: " AND {alias}.created_at >= ?" ... for the bounds (the rows carry their
    request's time, migration 011), then one ALSO_EQUALS for each of `properties`; and their
    parameters."""
    times, params = found.time_sql(f"{alias}.created_at")
    link = f"{alias}.request_id"
    for other in properties:
        times += ALSO_EQUALS.format(link=link)
        params += list(other)
    return times, params


def _property_source(condition: Condition, key: str) -> tuple[str, str, list[Any]]:
    """The grouped value, the FROM ... WHERE and its parameters for property_values."""
    if condition.sql == ALL.sql:
        return "tp.value", "FROM request_properties tp WHERE tp.key = ?", [key]
    found = parts(condition)
    if found.rest.sql != ALL.sql:
        source = (
            "FROM requests r CROSS JOIN request_properties tp "
            f"WHERE tp.request_id = r.id AND tp.key = ? AND ({condition.sql})"
        )
        return "tp.value", source, [key, *condition.params]
    if found.properties:
        # The rows of a property that equals a value lead, in its time range by (key, value,
        # created_at); the listed key's row of each of their requests is probed.
        (lead_key, lead_value), others = found.properties[0], found.properties[1:]
        tests, params = property_tests(found, "lp", others)
        source = (
            "FROM request_properties lp CROSS JOIN request_properties tp "
            f"WHERE lp.key = ? AND lp.value = ?{tests} AND tp.request_id = lp.request_id "
            "AND tp.key = ?"
        )
        params = [lead_key, lead_value, *params, key]
    else:
        tests, params = property_tests(found, "tp", ())
        source = f"FROM request_properties tp WHERE tp.key = ?{tests}"
        params = [key, *params]
    # An expression, so SQLite reads the key's rows in the range from (key, created_at, value)
    # instead of every row of the key in value order from (key, value, created_at).
    return "tp.value || ''", source, params


async def property_values(
    store: Store, condition: Condition, key: str, limit: int = 10
) -> list[dict[str, Any]]:
    """The most frequent values of property `key` among the rows matching `condition`: value
    and requests, most first (ties by value).

    Without a filter the (key, value, created_at) index answers alone. A filter of time
    bounds and properties equal to values is answered from the property rows alone, which
    carry their request's created_at (migration 011). Under any other filter the matching
    requests lead (CROSS JOIN keeps SQLite from starting at the property rows of every
    request, which a time range of one day among months would make thousands of times
    slower).
    """
    grouped, source, params = _property_source(condition, key)
    rows = await store.fetch(
        f"SELECT {grouped} AS value, COUNT(*) AS requests {source} "
        f"GROUP BY {grouped} ORDER BY COUNT(*) DESC, {grouped} LIMIT ?",
        [*params, _bounded(limit)],
    )
    return [{"value": row["value"], "requests": int(row["requests"])} for row in rows]


async def _top_models(store: Store, plan: rollups.Plan, limit: int) -> list[dict[str, Any]]:
    """top_values by model from the rollups' covered hours and the edge hours' rows."""
    counts: dict[str, int] = {}
    found = await rollups.hour_sums(store, plan, ["r.model"], ("requests",))
    found += await store.fetch(
        "SELECT r.model AS g0, COUNT(*) AS requests FROM requests r "
        f"WHERE ({plan.rest.sql}) GROUP BY r.model",
        plan.rest.params,
    )
    for row in found:
        if row["g0"] is not None:
            counts[row["g0"]] = counts.get(row["g0"], 0) + int(_number(row["requests"]))
    ranked = sorted((item for item in counts.items() if item[1]), key=lambda i: (-i[1], i[0]))
    return [{"value": value, "requests": count} for value, count in ranked[:limit]]


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

    def index_sql(self, column: str = "s.value") -> tuple[str, list[Any]]:
        """SQL for a value's bin: the inner edges at or below it (for integers: the value)."""
        if self.integral:
            return column, []
        inner = self.edges()[1:-1]
        if not inner:
            return "0", []
        parts = " + ".join(
            f"CASE WHEN {column} >= CAST(? AS DOUBLE PRECISION) THEN 1 ELSE 0 END" for _ in inner
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


# Per score name: how many, their sum, range, and how many are not whole numbers; from the
# scores, and from the score value rollups (`r`: how many scores had each value).
FIGURES = (
    "COUNT(*) AS count, SUM(s.value) AS total, MIN(s.value) AS low, MAX(s.value) AS high, "
    "SUM(CASE WHEN s.value <> ROUND(s.value) THEN 1 ELSE 0 END) AS fractional"
)
ROLLUP_FIGURES = (
    "SUM(r.count) AS count, SUM(r.value * r.count) AS total, MIN(r.value) AS low, "
    "MAX(r.value) AS high, SUM(CASE WHEN r.value <> ROUND(r.value) THEN r.count ELSE 0 END) "
    "AS fractional"
)
EDGE_SCORES = "FROM requests r CROSS JOIN scores s WHERE s.request_id = r.id AND ({})"


@dataclass(slots=True)
class Figures:
    """One score name's count, sum, smallest and largest value, and fractional values."""

    count: int
    total: float
    low: float
    high: float
    fractional: int

    @classmethod
    def of(cls, row: dict[str, Any]) -> Figures:
        return cls(
            int(_number(row["count"])),
            _number(row["total"]),
            _number(row["low"]),
            _number(row["high"]),
            int(_number(row["fractional"])),
        )

    def add(self, other: Figures) -> None:
        self.count += other.count
        self.total += other.total
        self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        self.fractional += other.fractional


async def _score_figures(
    store: Store, condition: Condition, plan: rollups.Plan | None, limit: int
) -> dict[str, Figures]:
    """The `limit` most scored names' figures, most scored first (ties by name)."""
    if plan is None:
        rows = await store.fetch(
            f"SELECT s.name AS name, {FIGURES} {joined('scores s', 's.request_id', condition)} "
            "GROUP BY s.name ORDER BY COUNT(*) DESC, s.name LIMIT ?",
            [*condition.params, limit],
        )
        return {row["name"]: Figures.of(row) for row in rows}
    rows = await rollups.score_values(
        store, plan, f"r.name AS name, {ROLLUP_FIGURES}", [], "r.name"
    )
    rows += await store.fetch(
        f"SELECT s.name AS name, {FIGURES} {EDGE_SCORES.format(plan.rest.sql)} GROUP BY s.name",
        plan.rest.params,
    )
    found: dict[str, Figures] = {}
    for row in rows:
        figures = Figures.of(row)
        if not figures.count:
            continue
        if row["name"] in found:
            found[row["name"]].add(figures)
        else:
            found[row["name"]] = figures
    ranked = sorted(found, key=lambda name: (-found[name].count, name))[:limit]
    return {name: found[name] for name in ranked}


async def score_distributions(
    store: Store, condition: Condition, limit: int = 12
) -> list[dict[str, Any]]:
    """Per score name among the matching rows, most scored first: count, avg, min, max and a
    histogram (see Histogram). Two passes, whatever the number of names: the figures, then
    every name's bins with each name's edges as parameters. When the rollups answer the
    condition (time range, model, outcome), both passes read the score value rollups for
    the covered hours and the scores of the edge hours alone."""
    plan = await rollups.plan(store, condition, [])
    figures = await _score_figures(store, condition, plan, _bounded(limit))
    if not figures:
        return []
    shapes = {
        name: Histogram(
            found.low,
            found.high,
            not found.fractional and found.high - found.low < MAX_INTEGER_BINS,
        )
        for name, found in figures.items()
    }
    marks = ", ".join("?" for _ in shapes)

    def bin_case(column: str, name_column: str) -> tuple[str, list[Any]]:
        cases, params = [], []
        for name, shape in shapes.items():
            sql, edges = shape.index_sql(column)
            cases.append(f"WHEN ? THEN {sql}")
            params += [name, *edges]
        return f"CASE {name_column} {' '.join(cases)} END", params

    case, case_params = bin_case("s.value", "s.name")
    if plan is None:
        source, params = joined("scores s", "s.request_id", condition), condition.params
    else:
        source, params = EDGE_SCORES.format(plan.rest.sql), plan.rest.params
    rows = await store.fetch(
        f"SELECT s.name AS name, {case} AS bin, COUNT(*) AS count {source} "
        f"AND s.name IN ({marks}) GROUP BY s.name, bin",
        [*case_params, *params, *shapes],
    )
    if plan is not None:
        case, case_params = bin_case("r.value", "r.name")
        rows += await rollups.score_values(
            store,
            plan,
            f"r.name AS name, {case} AS bin, SUM(r.count) AS count",
            case_params,
            "r.name, bin",
        )
    counts: dict[str, dict[int, int]] = {name: {} for name in shapes}
    for row in rows:
        if row["name"] in counts and row["bin"] is not None:
            index = int(_number(row["bin"]))
            counts[row["name"]][index] = counts[row["name"]].get(index, 0) + int(row["count"])
    return [
        {
            "name": name,
            "count": found.count,
            "avg": round(found.total / found.count, 6),
            "min": found.low,
            "max": found.high,
            "bins": shapes[name].bins(counts[name]),
        }
        for name, found in figures.items()
    ]


async def recent_negatives(
    store: Store, condition: Condition, limit: int = 10
) -> list[dict[str, Any]]:
    """The latest thumbs-down among the matching rows, most recently rated first.

    Each: id, created_at, model, user_id, rated_at, the comment given with the rating, and the
    first words of the prompt and of the answer (kept on the row, so no body is read).
    The (rating, updated_at, request_id) index gives the ratings newest first, so only the
    newest negatives are read until `limit` of them match.
    """
    rows = await store.fetch(
        "SELECT r.id AS id, r.created_at AS created_at, r.model AS model, r.user_id AS user_id, "
        "r.prompt_preview AS prompt_preview, r.answer_preview AS answer_preview, "
        "f.updated_at AS rated_at, f.comment AS comment FROM feedback f "
        f"JOIN requests r ON r.id = f.request_id WHERE f.rating = 0 AND ({condition.sql}) "
        "ORDER BY f.updated_at DESC, f.request_id DESC LIMIT ?",
        [*condition.params, _bounded(limit)],
    )
    return [dict(row) for row in rows]


def rated_rows(condition: Condition, *columns: str) -> tuple[str, str]:
    """`FROM ...` of the rated requests, `r` their request columns, and their rating's SQL:
    rollup_rated (migration 012) when `condition` and the grouped `columns` read no other
    request column than it holds, else the feedback joined to its requests."""
    read = set(REQUEST_COLUMN.findall(" ".join([condition.sql, *columns])))
    if read <= RATED_ROW_COLUMNS:
        return ROLLUP_RATED, "r.rating"
    return "FROM feedback f JOIN requests r ON r.id = f.request_id", "f.rating"


async def rated_over_time(
    store: Store, condition: Condition, dimensions: Sequence[str]
) -> list[dict[str, Any]]:
    """Rated and positive requests per group of `dimensions` (a time bucket, and optionally a
    model, user or property), in request_stats' group shape: {"key", "feedback"}.

    The same numbers as request_stats' groups, read from the rated rows alone (rated_rows):
    a split by a property or a user has no rollup, and this reads a few percent of the rows
    instead of every request.
    """
    check_dimensions(dimensions)
    grouping = Grouping.of(dimensions)
    source, rating = rated_rows(condition, *grouping.columns)
    rows = await store.fetch(
        f"SELECT {grouping.select()}COUNT(*) AS rated, SUM({rating}) AS positive "
        f"{source} {grouping.join} WHERE {condition.sql}" + grouping.group_by(),
        [*grouping.params, *condition.params],
    )
    return [
        {
            "key": dict(zip(dimensions, grouping.key(row), strict=True)),
            "feedback": {"count": int(row["rated"]), "positive": int(_number(row["positive"]))},
        }
        for row in rows
    ]


# The time buckets of rated_split: a day as request_stats' "day", or an hour; the same over
# rollup_hours' hour (the first 13 characters of created_at).
BUCKETS = {"hour": "substr(r.created_at, 1, 13)", "day": DIMENSIONS["day"]}
ROLLUP_BUCKETS = {"hour": "r.hour", "day": "substr(r.hour, 1, 10)"}
TOP_SPLIT = 6
# Cells of rated counts: (bucket or None, model or None) -> [rated, positive].
Cells = dict[tuple[Any, Any], list[int]]


async def rated_cells(
    store: Store, condition: Condition, unit: str | None, by_model: bool
) -> Cells | None:
    """Rated and positive requests per time bucket (`unit`; None: one cell) and, with
    `by_model`, per model, from the rollups' covered hours and the edge hours' rows; None
    when the rollups cannot answer `condition`. Cells without a rating are left out."""
    plan = await rollups.plan(store, condition, ["model"] if by_model else [])
    if plan is None:
        return None
    columns = [ROLLUP_BUCKETS[unit]] if unit else []
    # The edge hours by time: an expression for the day that is not requests_daily's own.
    raw = [f"{BUCKETS[unit]} || ''"] if unit else []
    if by_model:
        columns.append("r.model")
        raw.append("r.model")
    found = await rollups.hour_sums(store, plan, columns, ("rated", "positive"))
    select = "".join(f"{column} AS g{i}, " for i, column in enumerate(raw))
    found += await store.fetch(
        f"SELECT {select}COUNT(*) AS rated, SUM(f.rating) AS positive "
        f"FROM requests r CROSS JOIN feedback f WHERE f.request_id = r.id AND ({plan.rest.sql})"
        + (f" GROUP BY {', '.join(raw)}" if raw else ""),
        plan.rest.params,
    )
    cells: Cells = {}
    for row in found:
        rated = int(_number(row["rated"]))
        if not rated:
            continue
        key = (row["g0"] if unit else None, row[f"g{len(raw) - 1}"] if by_model else None)
        cell = cells.setdefault(key, [0, 0])
        cell[0] += rated
        cell[1] += int(_number(row["positive"]))
    return cells


async def rated_split(
    store: Store, condition: Condition, unit: str, by: str | None = None, top: int = TOP_SPLIT
) -> list[dict[str, Any]]:
    """Rated and positive requests per hour or day (`unit`), split by `by` (a dimension or
    `property:NAME`): its `top` most rated values, each its own group, and the rest together.

    Groups as rated_over_time's, {"key": {unit: bucket, by: value}, "feedback", "rest"}, where
    the rest's value is None and "rest" true; a row without a value is None with "rest" false.
    However many users or property values the rated rows hold, the answer is at most
    buckets x (top + 2) groups. With no split or a split by model, the rollups answer the
    filters they can (rated_cells); the others read the rated rows (rated_rows), and a split
    by a property under a time range (and properties equal to values) the rated property
    rows and rollup_rated alone (_property_cells).
    """
    if unit not in BUCKETS:
        raise QueryError(f"bucket by {', '.join(BUCKETS)}, not {unit!r}")
    if by is not None:
        check_dimensions([by])
    top = _bounded(top)
    if by in (None, "model"):
        cells = await rated_cells(store, condition, unit, by is not None)
        if cells is not None:
            return _split_cells(cells, unit, by, top)
    if by is None:
        source, rating = rated_rows(condition)
        rows = await store.fetch(
            f"SELECT {BUCKETS[unit]} AS g_bucket, COUNT(*) AS rated, SUM({rating}) AS positive "
            f"{source} WHERE {condition.sql} GROUP BY g_bucket",
            condition.params,
        )
        return [_split_group(row, unit, None) for row in rows]
    grouping = Grouping.of([by])
    source, rating = rated_rows(condition, grouping.columns[0])
    if grouping.join and source == ROLLUP_RATED and parts(condition).rest.sql == ALL.sql:
        cells = await _property_cells(store, condition, unit, grouping.params[0])
        return _split_cells(cells, unit, by, top)
    # The rated rows are read once (a CTE used twice is materialized): the top values are
    # ranked from them, then every row is counted under its value or as the rest.
    ranked = "SELECT v FROM top"
    rows = await store.fetch(
        f"WITH rated AS (SELECT {BUCKETS[unit]} AS b, {grouping.columns[0]} AS v, "
        f"{rating} AS rating {source} {grouping.join} WHERE {condition.sql}), "
        "top AS (SELECT v FROM rated WHERE v IS NOT NULL GROUP BY v "
        "ORDER BY COUNT(*) DESC, v LIMIT ?) "
        f"SELECT b AS g_bucket, CASE WHEN v IN ({ranked}) THEN v END AS g_value, "
        f"CASE WHEN v IS NULL OR v IN ({ranked}) THEN 0 ELSE 1 END AS g_rest, "
        "COUNT(*) AS rated, SUM(rating) AS positive FROM rated GROUP BY g_bucket, g_value, g_rest",
        [*grouping.params, *condition.params, top],
    )
    return [_split_group(row, unit, by) for row in rows]


# rated_split's time buckets over the property rows' own created_at.
PROPERTY_BUCKETS = {
    unit: sql.replace("r.created_at", "p.created_at") for unit, sql in BUCKETS.items()
}


async def _property_cells(store: Store, condition: Condition, unit: str, key: str) -> Cells:
    """Rated and positive requests per bucket and value of property `key`, for a condition
    of time bounds and properties equal to values: the rated property rows (migration 012)
    give each value's, and the rated rows without the key are the bucket's rated rows
    (rollup_rated) less those."""
    found = parts(condition)
    tests, params = property_tests(found, "p", found.properties)
    bucket = PROPERTY_BUCKETS[unit]
    rows = await store.fetch(
        f"SELECT {bucket} AS b, p.value AS v, COUNT(*) AS rated, SUM(p.rating) AS positive "
        f"FROM request_properties p WHERE p.key = ? AND p.rating IS NOT NULL{tests} "
        f"GROUP BY {bucket}, p.value",
        [key, *params],
    )
    totals = await store.fetch(
        f"SELECT {BUCKETS[unit]} AS b, COUNT(*) AS rated, SUM(r.rating) AS positive "
        f"FROM rollup_rated r WHERE {condition.sql} GROUP BY {BUCKETS[unit]}",
        condition.params,
    )
    cells: Cells = {}
    for row in totals:
        cells[(row["b"], None)] = [int(row["rated"]), int(_number(row["positive"]))]
    for row in rows:
        rated, positive = int(row["rated"]), int(_number(row["positive"]))
        cells[(row["b"], row["v"])] = [rated, positive]
        unvalued = cells.setdefault((row["b"], None), [0, 0])
        unvalued[0] -= rated
        unvalued[1] -= positive
    return {cell: counts for cell, counts in cells.items() if counts[0]}


async def split_by_unit(store: Store, condition: Condition, by: str | None) -> bool:
    """Whether rated_split answers `by` under `condition` from the rollups (no split, or by
    model) or from the narrow rated rows (rollup_rated, and the rated property rows), so that
    asking by day and then again by hour costs little; the other splits join each rating to
    its wide request row, best read once."""
    if by in (None, "model") and await rollups.plan(store, condition, ["model"]) is not None:
        return True
    column = Grouping.of([by]).columns[0] if by is not None else ""
    return rated_rows(condition, column)[0] == ROLLUP_RATED


def _split_cells(cells: Cells, unit: str, by: str | None, top: int) -> list[dict[str, Any]]:
    """rated_split's groups from rated_cells: the `top` most rated values (ties by value),
    rows without a value, and the rest summed, in bucket order."""
    weights: dict[Any, int] = {}
    for (_, value), (rated, _) in cells.items():
        if value is not None:
            weights[value] = weights.get(value, 0) + rated
    kept = set(sorted(weights, key=lambda v: (-weights[v], v))[:top])
    groups: dict[tuple[Any, Any, int], list[int]] = {}
    for (bucket, value), (rated, positive) in cells.items():
        rest = int(value is not None and value not in kept)
        group = groups.setdefault((bucket, None if rest else value, rest), [0, 0])
        group[0] += rated
        group[1] += positive
    return [
        _split_group(
            {"g_bucket": b, "g_value": v, "g_rest": rest, "rated": n, "positive": p}, unit, by
        )
        for (b, v, rest), (n, p) in sorted(
            groups.items(),
            key=lambda item: (item[0][0], item[0][2], item[0][1] is None, str(item[0][1])),
        )
    ]


def _split_group(row: dict[str, Any], unit: str, by: str | None) -> dict[str, Any]:
    key = {unit: row["g_bucket"]}
    if by is not None:
        key[by] = row["g_value"]
    return {
        "key": key,
        "feedback": {"count": int(row["rated"]), "positive": int(_number(row["positive"]))},
        "rest": by is not None and bool(int(row["g_rest"])),
    }
