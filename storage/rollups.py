"""The writer side of the rollups: what a request adds to them, applied in its transaction.

A request contributes its row (counts, latency and TTFT histogram buckets, tokens, cost), its
feedback rating and its scores to the hour x model x outcome it belongs to, and to its user and
session. `Deltas` collects contributions added and taken away (a replaced row, a changed rating
or score) for one transaction, grouped by key, and applies one upsert per key. Deletes by
retention never come here: the rollups keep the history (storage/migrations.py m007_rollups,
m009_score_values).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from storage.migrations import LATENCY_BOUNDS

if TYPE_CHECKING:
    from storage.sql import Tx

BOUNDS = [float(b) for b in LATENCY_BOUNDS]
LAST_BUCKET = len(BOUNDS) - 1
# The request columns a contribution reads.
COLUMNS = (
    "id",
    "created_at",
    "model",
    "outcome",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "cache_hit",
    "user_id",
    "session_id",
    "session_name",
)
SELECT_COLUMNS = f"SELECT {', '.join(COLUMNS)} FROM requests"
# The traffic sums of an hour x model x outcome (what the operations charts add up), then the
# cache and feedback counts the stats answers also read.
TRAFFIC_SUMS = (
    "requests",
    "latency_count",
    "latency_sum",
    "ttft_count",
    "ttft_sum",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
)
HOUR_SUMS = (*TRAFFIC_SUMS, "cache_hits", "rated", "positive")
TOTALS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
USER_SUMS = (*TOTALS, "rated", "positive")


def bucket(value: float) -> int:
    """The histogram bucket of a latency, as LATENCY_BUCKET_SQL computes it."""
    return min(bisect.bisect_right(BOUNDS, value), LAST_BUCKET)


def model_key(model: str | None) -> str:
    """storage.migrations.MODEL_KEY_SQL in Python."""
    return "" if model is None else f"={model}"


def _earliest(table: str, column: str) -> str:
    return (
        f"CASE WHEN {table}.{column} IS NULL OR excluded.{column} < {table}.{column} "
        f"THEN excluded.{column} ELSE {table}.{column} END"
    )


def _latest(table: str, column: str) -> str:
    return (
        f"CASE WHEN {table}.{column} IS NULL OR excluded.{column} > {table}.{column} "
        f"THEN excluded.{column} ELSE {table}.{column} END"
    )


def _upsert(table: str, key: Sequence[str], sums: Sequence[str], other: Sequence[str] = ()) -> str:
    """INSERT of a delta row that adds `sums` onto the stored row (NULL adds as 0)."""
    columns = [*key, *sums, *other]
    sets = [f"{c} = COALESCE({table}.{c}, 0) + COALESCE(excluded.{c}, 0)" for c in sums]
    for column in other:
        if column in ("first_at", "low"):
            sets.append(f"{column} = {_earliest(table, column)}")
        elif column in ("last_at", "high", "name"):
            sets.append(f"{column} = {_latest(table, column)}")
        else:
            sets.append(f"{column} = COALESCE(excluded.{column}, {table}.{column})")
    pk = [c for c in key if c != "model"]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
        f"ON CONFLICT({', '.join(pk)}) DO UPDATE SET {', '.join(sets)}"
    )


KEY = ("hour", "model_key", "model", "outcome")
HIST_KEY = ("period", "model_key", "model", "outcome", "metric", "bucket")
UPSERT_HOURS = _upsert("rollup_hours", KEY, HOUR_SUMS)
UPSERT_HOUR_HISTOGRAM = _upsert("rollup_hour_histogram", HIST_KEY, ("count", "total"))
UPSERT_DAY_HISTOGRAM = _upsert("rollup_day_histogram", HIST_KEY, ("count", "total"))
UPSERT_SCORES = _upsert("rollup_scores", (*KEY, "name"), ("count", "total"), ("low", "high"))
VALUE_KEY = ("period", "model_key", "model", "outcome", "name", "value")
UPSERT_HOUR_VALUES = _upsert("rollup_hour_score_values", VALUE_KEY, ("count",))
UPSERT_DAY_VALUES = _upsert("rollup_day_score_values", VALUE_KEY, ("count",))
UPSERT_USERS = _upsert("rollup_users", ("user_id",), USER_SUMS, ("first_at", "last_at"))
UPSERT_SESSIONS = _upsert(
    "rollup_sessions", ("session_id",), TOTALS, ("name", "first_at", "last_at")
)
# A score value taken away may have been the smallest or largest: read them again from the
# scores of that hour, model and outcome (through requests_model_created).
RESCAN_SCORES = (
    "UPDATE rollup_scores SET low = (SELECT MIN(s.value) {match}), "
    "high = (SELECT MAX(s.value) {match}) "
    "WHERE hour = ? AND model_key = ? AND outcome = ? AND name = ?"
)
RESCAN_MATCH = (
    "FROM scores s JOIN requests r ON r.id = s.request_id WHERE s.name = ? "
    "AND r.created_at >= ? AND r.created_at < ? AND substr(r.created_at, 1, 13) = ? "
    "AND r.outcome = ? AND r.model {model}"
)

# A user or session that lost its first or last request (or its name) reads them again.
_FIRST = "first_at = CASE WHEN first_at >= ? THEN (SELECT MIN(created_at) {rows}) ELSE first_at END"
_LAST = "last_at = CASE WHEN last_at <= ? THEN (SELECT MAX(created_at) {rows}) ELSE last_at END"
RESCAN_USER = f"UPDATE rollup_users SET {_FIRST}, {_LAST} WHERE user_id = ?".replace(
    "{rows}", "FROM requests WHERE user_id = ?"
)
RESCAN_SESSION = (
    f"UPDATE rollup_sessions SET {_FIRST}, {_LAST}, name = CASE WHEN name = ? THEN "
    "(SELECT MAX(session_name) {rows}) ELSE name END WHERE session_id = ?"
).replace("{rows}", "FROM requests WHERE session_id = ?")


def _next_hour(hour: str) -> str:
    """The hour after `hour` (YYYY-MM-DDTHH); past every hour when it does not parse."""
    try:
        return (datetime.strptime(hour, "%Y-%m-%dT%H") + timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    except ValueError:
        return "9999"


def _rescan(
    hour: str, key: str, model: str | None, outcome: str, name: str
) -> tuple[str, list[Any]]:
    match = RESCAN_MATCH.replace("{model}", "IS NULL" if model is None else "= ?")
    params: list[Any] = [name, hour, _next_hour(hour), hour, outcome]
    if model is not None:
        params.append(model)
    return RESCAN_SCORES.replace("{match}", match), [*params, *params, hour, key, outcome, name]


@dataclass(slots=True)
class Deltas:
    """Contributions added (+1) and taken away (-1) in one transaction, by rollup key."""

    hours: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)
    histograms: dict[tuple[str, str, str, str, int], list[Any]] = field(default_factory=dict)
    scores: dict[tuple[str, str, str, str], list[Any]] = field(default_factory=dict)
    rescan: set[tuple[str, str, str, str]] = field(default_factory=set)
    # How many scores of a name had a value, by hour x model x outcome x name x value.
    values: dict[tuple[str, str, str, str, float], int] = field(default_factory=dict)
    users: dict[str, list[Any]] = field(default_factory=dict)
    sessions: dict[str, list[Any]] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)
    # Users and sessions that lost a request: [earliest, latest time, latest name] it had.
    removed: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def _hour(self, request: Mapping[str, Any]) -> list[Any]:
        key = (request["created_at"][:13], model_key(request["model"]), request["outcome"])
        self.models[key[1]] = request["model"]
        return self.hours.setdefault(key, [0] * len(HOUR_SUMS))

    def _user(self, request: Mapping[str, Any]) -> list[Any] | None:
        user = request["user_id"]
        if user is None:
            return None
        return self.users.setdefault(user, [0] * len(USER_SUMS) + [None, None])

    def request(
        self,
        request: Mapping[str, Any],
        rating: int | None,
        scores: Mapping[str, float],
        sign: int,
    ) -> None:
        """Add (sign 1) or take away (sign -1) everything `request` contributes."""
        hour = self._hour(request)
        tokens = [request[c] or 0 for c in TOTALS[1:]]
        latency, ttft = request["latency_ms"], request["ttft_ms"]
        hour[0] += sign
        if latency is not None:
            hour[1] += sign
            hour[2] += sign * latency
        if ttft is not None:
            hour[3] += sign
            hour[4] += sign * ttft
        for i, value in enumerate(tokens):
            hour[5 + i] += sign * value
        hour[9] += sign * int(bool(request["cache_hit"]))
        key = (request["created_at"][:13], model_key(request["model"]), request["outcome"])
        for metric, value in (("latency", latency), ("ttft", ttft)):
            if value is not None:
                slot = self.histograms.setdefault((*key, metric, bucket(value)), [0, 0.0])
                slot[0] += sign
                slot[1] += sign * value
        if sign < 0:
            for kind in ("user_id", "session_id"):
                if request[kind] is not None:
                    self._removed(kind, request)
        user = self._user(request)
        if user is not None:
            user[0] += sign
            for i, value in enumerate(tokens):
                user[1 + i] += sign * value
            if sign > 0:
                user[7] = _min(user[7], request["created_at"])
                user[8] = _max(user[8], request["created_at"])
        session_id = request["session_id"]
        if session_id is not None:
            session = self.sessions.setdefault(session_id, [0] * len(TOTALS) + [None] * 3)
            session[0] += sign
            for i, value in enumerate(tokens):
                session[1 + i] += sign * value
            if sign > 0:
                session[5] = _max(session[5], request["session_name"])
                session[6] = _min(session[6], request["created_at"])
                session[7] = _max(session[7], request["created_at"])
        self.rating(request, None, rating, sign)
        for name, value in scores.items():
            self.score(request, name, None, value, sign)

    def _removed(self, kind: str, request: Mapping[str, Any]) -> None:
        slot = self.removed.setdefault((kind, request[kind]), [None, None, None])
        slot[0] = _min(slot[0], request["created_at"])
        slot[1] = _max(slot[1], request["created_at"])
        slot[2] = _max(slot[2], request["session_name"])

    def rating(
        self, request: Mapping[str, Any], old: int | None, new: int | None, sign: int = 1
    ) -> None:
        """A rating changed from `old` to `new` (None: none) on `request`."""
        rated = sign * (int(new is not None) - int(old is not None))
        positive = sign * ((new or 0) - (old or 0))
        if not rated and not positive:
            return
        hour = self._hour(request)
        hour[10] += rated
        hour[11] += positive
        user = self._user(request)
        if user is not None:
            user[5] += rated
            user[6] += positive

    def score(
        self,
        request: Mapping[str, Any],
        name: str,
        old: float | None,
        new: float | None,
        sign: int = 1,
    ) -> None:
        """A score changed from `old` to `new` (None: none) on `request`."""
        key = (request["created_at"][:13], model_key(request["model"]), request["outcome"], name)
        self.models[key[1]] = request["model"]
        slot = self.scores.setdefault(key, [0, 0.0, None, None])
        for value, direction in ((old, -sign), (new, sign)):
            if value is None:
                continue
            slot[0] += direction
            slot[1] += direction * value
            counted = (*key, value)
            self.values[counted] = self.values.get(counted, 0) + direction
            if direction > 0:
                slot[2], slot[3] = _min(slot[2], value), _max(slot[3], value)
            else:
                self.rescan.add(key)

    async def apply(self, tx: Tx) -> None:
        """One upsert per touched key, sorted so concurrent writers lock in one order."""
        models = self.models
        await _many(
            tx,
            UPSERT_HOURS,
            [(h, k, models[k], o, *v) for (h, k, o), v in sorted(self.hours.items())],
        )
        hourly, daily = [], []
        for (hour, key, outcome, metric, index), (count, total) in sorted(self.histograms.items()):
            hourly.append((hour, key, models[key], outcome, metric, index, count, total))
            daily.append((hour[:10], key, models[key], outcome, metric, index, count, total))
        await _many(tx, UPSERT_HOUR_HISTOGRAM, hourly)
        await _many(tx, UPSERT_DAY_HISTOGRAM, _merged(daily))
        await _many(
            tx,
            UPSERT_SCORES,
            [(h, k, models[k], o, n, *v) for (h, k, o, n), v in sorted(self.scores.items())],
        )
        hourly_values, daily_values = [], []
        for (hour, key, outcome, name, score), count in sorted(self.values.items()):
            if count:
                hourly_values.append((hour, key, models[key], outcome, name, score, count))
                daily_values.append((hour[:10], key, models[key], outcome, name, score, count))
        await _many(tx, UPSERT_HOUR_VALUES, hourly_values)
        await _many(tx, UPSERT_DAY_VALUES, _summed(daily_values))
        await _many(tx, UPSERT_USERS, [(u, *v) for u, v in sorted(self.users.items())])
        await _many(tx, UPSERT_SESSIONS, [(s, *v) for s, v in sorted(self.sessions.items())])
        for (kind, value), (earliest, latest, name) in sorted(self.removed.items()):
            if kind == "user_id":
                await tx.execute(RESCAN_USER, [earliest, value, latest, value, value])
            else:
                params = [earliest, value, latest, value, name, value, value]
                await tx.execute(RESCAN_SESSION, params)
        for hour, key, outcome, name in sorted(self.rescan):
            await tx.execute(*_rescan(hour, key, models[key], outcome, name))


def _merged(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Daily histogram rows with the hours of one day added together."""
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        slot = merged.setdefault(row[:6], [0, 0.0])
        slot[0] += row[6]
        slot[1] += row[7]
    return [(*key, *value) for key, value in merged.items()]


def _summed(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Daily score value rows with the hours of one day added together, in key order."""
    merged: dict[tuple[Any, ...], int] = {}
    for row in rows:
        merged[row[:6]] = merged.get(row[:6], 0) + row[6]
    return [(*key, count) for key, count in sorted(merged.items())]


async def _many(tx: Tx, sql: str, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        await tx.executemany(sql, rows)


def _min(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _max(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


# The rated requests (migration 012): a row per rated request, under the requests' column
# names, and the rating on each of its property rows.
RATED_COLUMNS = ("id", "created_at", "model", "outcome", "user_id")
UPSERT_RATED = (
    f"INSERT INTO rollup_rated ({', '.join(RATED_COLUMNS)}, rating) "
    f"VALUES ({', '.join('?' for _ in RATED_COLUMNS)}, ?) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in (*RATED_COLUMNS[1:], "rating"))
)
DELETE_RATED = "DELETE FROM rollup_rated WHERE id = ?"
RATE_PROPERTIES = "UPDATE request_properties SET rating = ? WHERE request_id = ?"


async def keep_rated(
    tx: Tx, rated: Sequence[tuple[Mapping[str, Any], int]], unrated: Sequence[str] = ()
) -> None:
    """rollup_rated in step with the rows: each (request, rating) in `rated` holds its row's
    columns and rating, the ids in `unrated` (a rating moved to history) hold none."""
    await _many(
        tx,
        UPSERT_RATED,
        sorted((*(request[c] for c in RATED_COLUMNS), rating) for request, rating in rated),
    )
    await _many(tx, DELETE_RATED, [(request_id,) for request_id in sorted(unrated)])
