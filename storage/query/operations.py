"""Operations over time: requests by outcome, latency and TTFT percentiles, tokens and cost per
hour or day, with the models used most, for the dashboard's operations page.

A filter of a time range, models and outcomes (a `Scope`) is answered from the writer's
rollups: the whole hours in the range from rollup_hours and rollup_hour_histogram, the whole
days from rollup_day_histogram, and only the partial hours at the range's two ends from the
rows, so the figures are the rows' own (the same as request_stats) however long the range.
Any other filter reads the matching rows. Percentiles come from the same 10%-wide latency
buckets as request_stats', estimated the same way. `top_users` and `top_property_values` give
the page's other lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from storage import Store
from storage.errors import QueryError
from storage.migrations import LATENCY_BUCKET_SQL, bucket_sql
from storage.query.analytics import property_values, top_values
from storage.query.filters import ALL, Condition
from storage.query.stats import Bucket, Group
from storage.query.users import UserQuery, user_page
from storage.rollups import TRAFFIC_SUMS, model_key

Unit = Literal["hour", "day"]
UNITS: tuple[Unit, ...] = ("hour", "day")
PERCENTILES = (50, 90, 99)
TOP_MODELS = 10
# The length of an hour's and a day's key ("2024-05-01T10", "2024-05-01").
HOUR, DAY = 13, 10
# The key the whole range's figures are summed under, beside the periods.
TOTAL = ""
SUMS = TRAFFIC_SUMS
ROLLUP_SUMS = ", ".join(f"SUM({column}) AS {column}" for column in SUMS)
ROW_SUMS = (
    "COUNT(*) AS requests, COUNT(r.latency_ms) AS latency_count, SUM(r.latency_ms) AS latency_sum, "
    "COUNT(r.ttft_ms) AS ttft_count, SUM(r.ttft_ms) AS ttft_sum, "
    "SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens, "
    "SUM(r.total_tokens) AS total_tokens, SUM(r.cost_usd) AS cost_usd"
)


@dataclass(frozen=True, slots=True)
class Scope:
    """A filter the rollups answer: created_at in [since, until) (stored UTC text, None for
    open), the model any of `models` and the outcome any of `outcomes` (empty: any)."""

    since: str | None = None
    until: str | None = None
    models: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Piece:
    """A part of the range and where it is read: the rows, or an hour or a day rollup.

    `low` and `high` are stored stamps for rows, hour or day keys for the rollups; None is open.
    """

    source: Literal["rows", "hour", "day"]
    low: str | None
    high: str | None


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _floor(stamp: str, length: int) -> datetime:
    return datetime.strptime(stamp[:length], "%Y-%m-%dT%H" if length == HOUR else "%Y-%m-%d")


def _ceil(stamp: str, length: int) -> datetime:
    """The first hour (or day) starting at or after `stamp`."""
    floor = _floor(stamp, length)
    if _stamp(floor) == stamp:
        return floor
    return floor + (timedelta(hours=1) if length == HOUR else timedelta(days=1))


def _key(moment: datetime | None, length: int) -> str | None:
    return None if moment is None else _stamp(moment)[:length]


def pieces(scope: Scope, unit: Unit) -> list[Piece]:
    """The range of `scope` cut where the rollups take over from the rows: partial hours at
    each end from the rows, whole hours from the hour rollup, and for a daily view the whole
    days in between from the day rollup."""
    since, until = scope.since, scope.until
    first = None if since is None else _ceil(since, HOUR)
    last = None if until is None else _floor(until, HOUR)
    if first is not None and last is not None and first >= last:
        return [Piece("rows", since, until)]
    out = []
    if since is not None and first is not None and _stamp(first) != since:
        out.append(Piece("rows", since, _stamp(first)))
    days_from = None if first is None else _ceil(_stamp(first), DAY)
    days_to = None if last is None else _floor(_stamp(last), DAY)
    daily = unit == "day" and (days_from is None or days_to is None or days_from < days_to)
    if not daily:
        out.append(Piece("hour", _key(first, HOUR), _key(last, HOUR)))
    else:
        if first is not None and days_from is not None and first < days_from:
            out.append(Piece("hour", _key(first, HOUR), _key(days_from, HOUR)))
        out.append(Piece("day", _key(days_from, DAY), _key(days_to, DAY)))
        if last is not None and days_to is not None and days_to < last:
            out.append(Piece("hour", _key(days_to, HOUR), _key(last, HOUR)))
    if until is not None and last is not None and _stamp(last) != until:
        out.append(Piece("rows", _stamp(last), until))
    return out


@dataclass(slots=True)
class Period:
    """One hour or day: requests per outcome and model, the sums, both histograms."""

    outcomes: dict[str, int] = field(default_factory=dict)
    models: dict[str | None, int] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SUMS, 0.0))
    latency: Group = field(default_factory=Group)
    ttft: Group = field(default_factory=Group)

    def add(self, row: dict[str, Any]) -> None:
        requests = int(row["requests"] or 0)
        self.outcomes[row["outcome"]] = self.outcomes.get(row["outcome"], 0) + requests
        self.models[row["model"]] = self.models.get(row["model"], 0) + requests
        for column in SUMS:
            self.sums[column] += float(row[column] or 0)

    def add_bucket(self, metric: str, index: int, count: int, total: float) -> None:
        group = self.latency if metric == "latency" else self.ttft
        group.latency_count += count
        group.latency_total += total
        bucket = group.buckets.setdefault(index, Bucket(index, 0, 0.0))
        bucket.count += count
        bucket.total += total

    def summary(self) -> dict[str, Any]:
        requests = int(self.sums["requests"])
        errors = requests - self.outcomes.get("ok", 0)
        latency_n, ttft_n = self.sums["latency_count"], self.sums["ttft_count"]
        return {
            "requests": requests,
            "errors": errors,
            "outcomes": dict(
                sorted(
                    ((o, n) for o, n in self.outcomes.items() if n), key=lambda on: (-on[1], on[0])
                )
            ),
            "latency_ms": {
                "avg": round(self.sums["latency_sum"] / latency_n, 3) if latency_n else None,
                **self.latency.percentiles(PERCENTILES),
            },
            "ttft_ms": {
                "avg": round(self.sums["ttft_sum"] / ttft_n, 3) if ttft_n else None,
                **self.ttft.percentiles(PERCENTILES),
            },
            "tokens": {
                "prompt": int(self.sums["prompt_tokens"]),
                "completion": int(self.sums["completion_tokens"]),
                "total": int(self.sums["total_tokens"]),
            },
            "cost_usd": round(self.sums["cost_usd"], 9),
        }


def _rollup_where(piece: Piece, scope: Scope, column: str) -> tuple[str, list[Any]]:
    where, params = ["1 = 1"], []
    if piece.low is not None:
        where.append(f"{column} >= ?")
        params.append(piece.low)
    if piece.high is not None:
        where.append(f"{column} < ?")
        params.append(piece.high)
    if scope.models:
        where.append(f"model_key IN ({', '.join('?' for _ in scope.models)})")
        params += [model_key(model) for model in scope.models]
    if scope.outcomes:
        where.append(f"outcome IN ({', '.join('?' for _ in scope.outcomes)})")
        params += list(scope.outcomes)
    return " AND ".join(where), params


def _row_where(condition: Condition, piece: Piece | None) -> tuple[str, list[Any]]:
    where, params = [f"({condition.sql})"], list(condition.params)
    if piece is not None and piece.low is not None:
        where.append("r.created_at >= ?")
        params.append(piece.low)
    if piece is not None and piece.high is not None:
        where.append("r.created_at < ?")
        params.append(piece.high)
    return " AND ".join(where), params


async def _from_rows(
    store: Store, where: str, params: list[Any], length: int, periods: dict[str, Period]
) -> None:
    period = f"substr(r.created_at, 1, {length})"
    rows = await store.fetch(
        f"SELECT {period} AS period, r.model AS model, r.outcome AS outcome, "
        f"{LATENCY_BUCKET_SQL} AS bucket, {ROW_SUMS} FROM requests r WHERE {where} "
        f"GROUP BY {period}, r.model, r.outcome, {LATENCY_BUCKET_SQL}",
        params,
    )
    for row in rows:
        slot = periods.setdefault(row["period"], Period())
        slot.add(row)
        periods[TOTAL].add(row)
        if int(row["bucket"]) >= 0:
            total = float(row["latency_sum"] or 0)
            for each in (slot, periods[TOTAL]):
                each.add_bucket("latency", int(row["bucket"]), int(row["latency_count"]), total)
    ttft_bucket = bucket_sql("ttft_ms")
    rows = await store.fetch(
        f"SELECT {period} AS period, {ttft_bucket} AS bucket, COUNT(*) AS count, "
        f"SUM(r.ttft_ms) AS total FROM requests r WHERE {where} AND r.ttft_ms IS NOT NULL "
        f"GROUP BY {period}, {ttft_bucket}",
        params,
    )
    for row in rows:
        for each in (periods[row["period"]], periods[TOTAL]):
            each.add_bucket("ttft", int(row["bucket"]), int(row["count"]), float(row["total"] or 0))


def _period(column: str, stored: int, length: int) -> str:
    """The period key of a rollup key column holding `stored` characters; the column itself
    when it is one already, so SQLite groups in the order of the primary key."""
    return column if stored == length else f"substr({column}, 1, {length})"


async def _from_rollups(
    store: Store, piece: Piece, scope: Scope, length: int, periods: dict[str, Period]
) -> None:
    hours = piece
    if piece.source == "day":
        # Whole days: the sums from the hours (a small table), the histograms by day.
        hours = Piece("hour", piece.low and piece.low + "T00", piece.high and piece.high + "T00")
    where, params = _rollup_where(hours, scope, "hour")
    period = _period("hour", HOUR, length)
    rows = await store.fetch(
        f"SELECT {period} AS period, model, outcome, {ROLLUP_SUMS} FROM rollup_hours "
        f"WHERE {where} GROUP BY {period}, model_key, model, outcome",
        params,
    )
    for row in rows:
        periods.setdefault(row["period"], Period()).add(row)
        periods[TOTAL].add(row)
    table, stored = ("rollup_hour_histogram", HOUR)
    if piece.source == "day":
        table, stored = ("rollup_day_histogram", DAY)
    where, params = _rollup_where(piece, scope, "period")
    period = _period("period", stored, length)
    rows = await store.fetch(
        f"SELECT {period} AS period, metric, bucket, SUM(count) AS count, SUM(total) AS total "
        f"FROM {table} WHERE {where} GROUP BY {period}, metric, bucket",
        params,
    )
    total_of = periods[TOTAL]
    for row in rows:
        metric, index, count = row["metric"], int(row["bucket"]), int(row["count"])
        total = float(row["total"] or 0)
        periods.setdefault(row["period"], Period()).add_bucket(metric, index, count, total)
        total_of.add_bucket(metric, index, count, total)


async def operations(
    store: Store, condition: Condition, unit: Unit, scope: Scope | None = None
) -> dict[str, Any]:
    """Per hour or day (`unit`) of the rows matching `condition`: requests, errors and
    requests per outcome, latency and TTFT avg/p50/p90/p99, tokens and cost; the same over
    everything ("totals"), and the models with the most requests ("models": value, requests).

    With a `scope` (which must say what `condition` says) the rollups answer it; without
    one the matching rows are read. Periods holding no request are left out.
    """
    if unit not in UNITS:
        raise QueryError(f"unit must be hour or day, not {unit!r}")
    length = HOUR if unit == "hour" else DAY
    periods: dict[str, Period] = {TOTAL: Period()}
    if scope is None:
        await _from_rows(store, *_row_where(condition, None), length, periods)
    else:
        for piece in pieces(scope, unit):
            if piece.source == "rows":
                await _from_rows(store, *_row_where(condition, piece), length, periods)
            else:
                await _from_rollups(store, piece, scope, length, periods)
    totals = periods.pop(TOTAL)
    kept = {key: period for key, period in periods.items() if period.sums["requests"] > 0}
    models = sorted(
        ((model, count) for model, count in totals.models.items() if model is not None and count),
        key=lambda mc: (-mc[1], mc[0]),
    )
    return {
        "unit": unit,
        "periods": [{"period": key, **kept[key].summary()} for key in sorted(kept)],
        "totals": totals.summary(),
        "models": [{"value": m, "requests": c} for m, c in models[:TOP_MODELS]],
    }


async def top_property_values(
    store: Store, condition: Condition, key: str, limit: int = TOP_MODELS
) -> list[dict[str, Any]]:
    """The most frequent values of property `key` among the matching rows: value and
    requests, most first (ties by value). A time range (with properties equal to values)
    reads the property rows alone, by the created_at they carry (storage.query.analytics.
    property_values); any other filter reads the matching requests first."""
    if not 1 <= limit <= 100:
        raise QueryError(f"limit must be 1-100, got {limit}")
    return await property_values(store, condition, key, limit)


async def top_users(
    store: Store, condition: Condition, limit: int = TOP_MODELS
) -> list[dict[str, Any]]:
    """The users with the most matching requests: value and requests, most first (ties by
    id). rollup_users answers without a filter; the (user_id, created_at) index with one."""
    if condition.sql != ALL.sql:
        return await top_values(store, condition, "user", limit)
    page = await user_page(store, condition, UserQuery("requests", limit))
    return [{"value": row["user_id"], "requests": row["requests"]} for row in page.rows]
