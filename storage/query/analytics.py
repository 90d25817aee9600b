"""What the dashboard's analytics need beyond request_stats: score distributions, top values,
the most recent negative feedback, and the property keys and score names in the store.

Every value, property key and score name is a bound parameter, and every result is bounded by
a limit: a store with a million rows and thousands of distinct users still answers a short list.
"""

from __future__ import annotations

from typing import Any, Literal

from storage import Store
from storage.errors import QueryError
from storage.query.filters import ALL, Condition
from storage.query.stats import PROPERTY_PREFIX

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


async def score_distributions(
    store: Store, condition: Condition, limit: int = 12
) -> list[dict[str, Any]]:
    """Per score name among the matching rows: count, avg, min, max and a histogram.

    Integer scores over a small range (booleans, 1-5 stars) get a bin per value; others
    BINS equal-width bins from min to max, each bin [low, high) and the last one closed.
    """
    names = await store.fetch(
        "SELECT s.name AS name, COUNT(*) AS count, SUM(s.value) AS total, MIN(s.value) AS low, "
        "MAX(s.value) AS high, SUM(CASE WHEN s.value <> ROUND(s.value) THEN 1 ELSE 0 END) "
        f"AS fractional {joined('scores s', 's.request_id', condition)} "
        "GROUP BY s.name ORDER BY COUNT(*) DESC, s.name LIMIT ?",
        [*condition.params, _bounded(limit)],
    )
    out = []
    for row in names:
        count, low, high = int(row["count"]), _number(row["low"]), _number(row["high"])
        integral = not int(_number(row["fractional"])) and high - low < MAX_INTEGER_BINS
        bins = (
            await _value_bins(store, condition, row["name"], low, high)
            if integral
            else await _width_bins(store, condition, row["name"], low, high)
        )
        out.append(
            {
                "name": row["name"],
                "count": count,
                "avg": round(_number(row["total"]) / count, 6),
                "min": low,
                "max": high,
                "bins": bins,
            }
        )
    return out


async def _value_bins(
    store: Store, condition: Condition, name: str, low: float, high: float
) -> list[dict[str, Any]]:
    rows = await store.fetch(
        "SELECT s.value AS value, COUNT(*) AS count "
        f"{joined('scores s', 's.request_id', condition)} AND s.name = ? GROUP BY s.value",
        [*condition.params, name],
    )
    counts = {int(_number(row["value"])): int(row["count"]) for row in rows}
    return [
        {
            "label": str(value),
            "low": float(value),
            "high": float(value),
            "count": counts.get(value, 0),
        }
        for value in range(int(low), int(high) + 1)
    ]


async def _width_bins(
    store: Store, condition: Condition, name: str, low: float, high: float
) -> list[dict[str, Any]]:
    if high == low:
        rows = await store.fetch(
            f"SELECT COUNT(*) AS count {joined('scores s', 's.request_id', condition)} "
            "AND s.name = ?",
            [*condition.params, name],
        )
        return [{"label": f"{low:.4g}", "low": low, "high": high, "count": int(rows[0]["count"])}]
    edges = [low + (high - low) * i / BINS for i in range(BINS + 1)]
    below = ", ".join(
        f"SUM(CASE WHEN s.value < CAST(? AS DOUBLE PRECISION) THEN 1 ELSE 0 END) AS c{i}"
        for i in range(1, BINS)
    )
    rows = await store.fetch(
        f"SELECT COUNT(*) AS total, {below} {joined('scores s', 's.request_id', condition)} "
        "AND s.name = ?",
        [*edges[1:BINS], *condition.params, name],
    )
    cumulative = [
        0,
        *(int(_number(rows[0][f"c{i}"])) for i in range(1, BINS)),
        int(rows[0]["total"]),
    ]
    return [
        {
            "label": f"{edges[i]:.4g} to {edges[i + 1]:.4g}",
            "low": edges[i],
            "high": edges[i + 1],
            "count": cumulative[i + 1] - cumulative[i],
        }
        for i in range(BINS)
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
