"""What both SQL stores share: the statements, row encoding and every method built on them.

Statements use `?` placeholders; a backend supplies `fetch`, `transaction` and `migration_lock`.
A list of ids is bound `ID_CHUNK` at a time (`chunked`), the one place that keeps statements
within SQLite's limit on parameters.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, Protocol

import orjson

from storage.cache import CacheStore
from storage.history import keep_history, replaced_calls, with_reuse_warning
from storage.migrations import MIGRATIONS, MIGRATIONS_TABLE, Dialect
from storage.models import ROW_COLUMNS, UNCHANGED, Row, Unchanged, utc_iso
from storage.query.rows import SELECT_RECORD, present
from storage.ratelimit import RateLimitStore
from storage.rollups import COLUMNS, RATE_PROPERTIES, SELECT_COLUMNS, Deltas, keep_rated

# SQLite's default limit on `?` parameters in one statement is 999 on old builds.
ID_CHUNK = 500
IDS = "{ids}"
# Whether a database holds relaylog's schema: its migrations table, in the schema in use.
SCHEMA_PROBE = {
    "sqlite": "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'relaylog_migrations'",
    "postgres": "SELECT 1 FROM information_schema.tables"
    " WHERE table_schema = current_schema() AND table_name = 'relaylog_migrations'",
}
Statement = tuple[str, list[Any]]

# What write_batch reads of the rows it replaces: their rollup columns and body digest.
SELECT_CURRENT = f"SELECT {', '.join(COLUMNS)}, request_hash FROM requests"

UPSERT_ROW = (
    f"INSERT INTO requests ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ROW_COLUMNS if c != "id")
)

# A property row carries its request's created_at, so a time range reads properties alone,
# and its rating (migration 012), so a rated-rows read needs no join either.
INSERT_PROPERTY = (
    "INSERT INTO request_properties (request_id, key, value, created_at, rating) "
    "VALUES (?, ?, ?, ?, ?)"
)


def storable(text: str) -> str:
    """`text` with NUL characters as U+FFFD: PostgreSQL's text cannot hold NUL, and a logged
    model name, path or body must not lose its row over one (both stores keep the same)."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


_row_fields = operator.attrgetter(*ROW_COLUMNS)
PROPERTIES_AT = ROW_COLUMNS.index("properties")
IS_STREAM_AT = ROW_COLUMNS.index("is_stream")
CACHE_HIT_AT = ROW_COLUMNS.index("cache_hit")
# The columns a Row types as text (str or None): one search for NUL over them all at once.
_texts = operator.itemgetter(
    *(i for i, c in enumerate(ROW_COLUMNS) if str(Row.__annotations__[c]).startswith("str"))
)
# The rollup columns of a row's values, for storage.rollups.Deltas.
_rollup_values = operator.itemgetter(*(ROW_COLUMNS.index(c) for c in COLUMNS))


def row_values(row: Row) -> tuple[Any, ...]:
    """The row's values in ROW_COLUMNS order, JSON and booleans encoded for SQL, and every
    text with NUL made U+FFFD (storable)."""
    values = list(_row_fields(row))
    values[PROPERTIES_AT] = orjson.dumps(values[PROPERTIES_AT]).decode()
    values[IS_STREAM_AT] = int(values[IS_STREAM_AT])
    values[CACHE_HIT_AT] = int(values[CACHE_HIT_AT])
    try:
        # Nearly every row has no NUL; join raises for a text column holding something else.
        plain = "\x00" not in "".join(filter(None, _texts(values)))
    except TypeError:
        plain = False
    if plain:
        return tuple(values)
    return tuple(storable(v) if isinstance(v, str) else v for v in values)


def chunked(
    sql: str, ids: Sequence[Any], before: Sequence[Any] = (), after: Sequence[Any] = ()
) -> list[Statement]:
    """`sql` once per chunk of `ids`, its `{ids}` replaced by that chunk's placeholders.

    Each statement's parameters are `before`, the chunk, then `after`; no ids, no statements.
    """
    statements = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = list(ids[start : start + ID_CHUNK])
        marks = ", ".join("?" for _ in chunk)
        statements.append((sql.replace(IDS, marks), [*before, *chunk, *after]))
    return statements


class Tx(Protocol):
    """One open transaction, whatever the driver."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...


class SqlStore(CacheStore, RateLimitStore):
    """The Store interface written once in SQL; subclasses connect and run statements."""

    dialect: Dialect
    description: str

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def transact(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[dict[str, Any]]]:
        async with self.transaction() as tx:
            return [await tx.fetchall(sql, params) for sql, params in statements]

    async def fetch_in(
        self, sql: str, ids: Sequence[Any], before: Sequence[Any] = (), after: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """The rows of `sql` for every id, its `{ids}` bound a chunk at a time (see chunked)."""
        rows: list[dict[str, Any]] = []
        for statement, params in chunked(sql, ids, before, after):
            rows += await self.fetch(statement, params)
        return rows

    async def migration_lock(self, tx: Tx) -> None:
        """Keep concurrent replicas from migrating at once (a no-op where writes serialise)."""

    async def migrate(self) -> list[str]:
        applied: list[str] = []
        async with self.transaction() as tx:
            await self.migration_lock(tx)
            await tx.execute(MIGRATIONS_TABLE)
            done = {r["name"] for r in await tx.fetchall("SELECT name FROM relaylog_migrations")}
            for name, migration in MIGRATIONS:
                if name in done:
                    continue
                for statement in migration(self.dialect):
                    await tx.execute(statement)
                await tx.execute(
                    "INSERT INTO relaylog_migrations (name, applied_at) VALUES (?, ?)",
                    (name, utc_iso(time.time())),
                )
                applied.append(name)
        return applied

    async def ping(self) -> None:
        await self.fetch("SELECT 1 AS ok")

    async def rollup_lock(self, tx: Tx) -> None:
        """Keep two transactions that change rollups from reading each other's old state."""

    async def write_batch(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        async with self.transaction() as tx:
            await self.rollup_lock(tx)
            before, ratings, scores = await _current(tx, sorted({r.id for r in rows}))
            # A different call under a used id: the earlier exchange moves to its history.
            displaced = replaced_calls(rows, {old["id"]: old["request_hash"] for old in before})
            moved = await keep_history(tx, displaced) if displaced else set()
            reused = {item if isinstance(item, str) else item.id for item in displaced}
            if reused:
                rows = [
                    replace(r, warnings=with_reuse_warning(r.warnings, r.id))
                    if r.id in reused
                    else r
                    for r in rows
                ]
            values = [row_values(r) for r in rows]
            # As stored (NUL made U+FFFD), the last row of each id: what the rollups read.
            latest = {v[0]: dict(zip(COLUMNS, _rollup_values(v), strict=True)) for v in values}
            await tx.executemany(UPSERT_ROW, values)
            await tx.executemany(
                "DELETE FROM request_properties WHERE request_id = ?", [(r.id,) for r in rows]
            )
            # The properties of the row stored under each id, with its time and rating (a
            # moved exchange took its rating along).
            props = []
            for stored_id, r in {storable(r.id): r for r in rows}.items():
                created = latest[stored_id]["created_at"]
                rated = None if stored_id in moved else ratings.get(stored_id)
                props += [
                    (stored_id, storable(k), storable(v), created, rated)
                    for k, v in r.properties.items()
                ]
            if props:
                await tx.executemany(INSERT_PROPERTY, props)
            # A replaced exchange takes its old contribution away, feedback and scores too.
            deltas = Deltas()
            for old in before:
                deltas.request(old, ratings.get(old["id"]), scores.get(old["id"], {}), -1)
            for record in latest.values():
                # A moved exchange took its feedback and scores along; the new one is unrated.
                kept = record["id"] not in moved
                rating = ratings.get(record["id"]) if kept else None
                deltas.request(record, rating, scores.get(record["id"], {}) if kept else {}, 1)
            await deltas.apply(tx)
            # The rated rows (migration 012): a moved exchange's rating went with it.
            rated_ids = [i for i in latest if i in ratings]
            await keep_rated(
                tx,
                [(latest[i], ratings[i]) for i in rated_ids if i not in moved],
                [i for i in rated_ids if i in moved],
            )

    async def get_request(self, request_id: str) -> dict[str, Any] | None:
        rows = await self.fetch(f"{SELECT_RECORD} WHERE r.id = ?", (request_id,))
        if not rows:
            return None
        scores = await self.fetch(
            "SELECT name, value FROM scores WHERE request_id = ? ORDER BY name", (request_id,)
        )
        return present(rows[0], {s["name"]: float(s["value"]) for s in scores})

    async def request_exists(self, request_id: str) -> bool:
        return bool(await self.fetch("SELECT 1 AS ok FROM requests WHERE id = ?", (request_id,)))

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        rows = await self.fetch_in("SELECT id FROM requests WHERE id IN ({ids})", sorted(set(ids)))
        return {r["id"] for r in rows}

    async def session_exists(self, session_id: str) -> bool:
        return bool(
            await self.fetch(
                "SELECT 1 AS ok FROM requests WHERE session_id = ? LIMIT 1", (session_id,)
            )
        )

    async def _upsert_returning(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        async with self.transaction() as tx:
            rows = await tx.fetchall(sql, params)
        row = rows[0]
        row["rating"] = bool(row["rating"])
        return row

    async def upsert_feedback(
        self, request_id: str, rating: bool, comment: str | Unchanged | None = UNCHANGED
    ) -> dict[str, Any]:
        now = utc_iso(time.time())
        keep = comment is UNCHANGED
        async with self.transaction() as tx:
            await self.rollup_lock(tx)
            old = await tx.fetchall(
                "SELECT rating FROM feedback WHERE request_id = ?", (request_id,)
            )
            rows = await tx.fetchall(
                "INSERT INTO feedback (request_id, rating, comment, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET "
                f"rating = excluded.rating, {'' if keep else 'comment = excluded.comment, '}"
                "updated_at = excluded.updated_at RETURNING *",
                (request_id, int(rating), None if keep else comment, now, now),
            )
            # Feedback for a row not written yet is rolled up when the row is.
            for request in await tx.fetchall(f"{SELECT_COLUMNS} WHERE id = ?", (request_id,)):
                deltas = Deltas()
                deltas.rating(request, int(old[0]["rating"]) if old else None, int(rating))
                await deltas.apply(tx)
                await keep_rated(tx, [(request, int(rating))])
                await tx.execute(RATE_PROPERTIES, (int(rating), request_id))
        row = rows[0]
        row["rating"] = bool(row["rating"])
        return row

    async def set_property(self, request_id: str, key: str, value: str) -> bool:
        """Set one property of a logged request; False when no request has that id."""
        lock = " FOR UPDATE" if self.dialect.name == "postgres" else ""
        async with self.transaction() as tx:
            rows = await tx.fetchall(
                f"SELECT properties, created_at FROM requests WHERE id = ?{lock}", (request_id,)
            )
            if not rows:
                return False
            rated = await tx.fetchall(
                "SELECT rating FROM feedback WHERE request_id = ?", (request_id,)
            )
            properties = orjson.loads(rows[0]["properties"] or "{}")
            properties[key] = value
            await tx.execute(
                "UPDATE requests SET properties = ? WHERE id = ?",
                (orjson.dumps(properties).decode(), request_id),
            )
            await tx.execute(
                f"{INSERT_PROPERTY} ON CONFLICT(request_id, key) DO UPDATE SET "
                "value = excluded.value, created_at = excluded.created_at, "
                "rating = excluded.rating",
                (
                    request_id,
                    key,
                    value,
                    rows[0]["created_at"],
                    rated[0]["rating"] if rated else None,
                ),
            )
        return True

    async def upsert_session_feedback(self, session_id: str, rating: bool) -> dict[str, Any]:
        now = utc_iso(time.time())
        return await self._upsert_returning(
            "INSERT INTO session_feedback (session_id, rating, created_at, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
            "rating = excluded.rating, updated_at = excluded.updated_at RETURNING *",
            (session_id, int(rating), now, now),
        )

    async def upsert_scores(self, request_id: str, scores: Mapping[str, float]) -> dict[str, float]:
        now = utc_iso(time.time())
        async with self.transaction() as tx:
            await self.rollup_lock(tx)
            old = await tx.fetchall(
                "SELECT name, value FROM scores WHERE request_id = ?", (request_id,)
            )
            await tx.executemany(
                "INSERT INTO scores (request_id, name, value, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(request_id, name) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                [(request_id, name, float(v), now, now) for name, v in scores.items()],
            )
            before = {r["name"]: float(r["value"]) for r in old}
            for request in await tx.fetchall(f"{SELECT_COLUMNS} WHERE id = ?", (request_id,)):
                deltas = Deltas()
                for name, value in scores.items():
                    deltas.score(request, name, before.get(name), float(value))
                await deltas.apply(tx)
        return dict(scores)


async def _current(
    tx: Tx, ids: Sequence[str]
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, dict[str, float]]]:
    """The stored rows (storage.rollups.COLUMNS), ratings and scores of `ids`, as `tx` sees them."""
    rows: list[dict[str, Any]] = []
    ratings: dict[str, int] = {}
    scores: dict[str, dict[str, float]] = {}
    for sql, params in chunked(f"{SELECT_CURRENT} WHERE id IN ({IDS})", ids):
        rows += await tx.fetchall(sql, params)
    for sql, params in chunked(
        f"SELECT request_id, rating FROM feedback WHERE request_id IN ({IDS})", ids
    ):
        ratings.update({r["request_id"]: int(r["rating"]) for r in await tx.fetchall(sql, params)})
    for sql, params in chunked(
        f"SELECT request_id, name, value FROM scores WHERE request_id IN ({IDS})", ids
    ):
        for r in await tx.fetchall(sql, params):
            scores.setdefault(r["request_id"], {})[r["name"]] = float(r["value"])
    return rows, ratings, scores
