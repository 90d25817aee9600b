"""The SQLite store: WAL, busy_timeout, synchronous=NORMAL, one writer connection."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import orjson

from storage.base import StoreError
from storage.migrations import MIGRATIONS, MIGRATIONS_TABLE, SQLITE
from storage.models import ROW_COLUMNS, Row, utc_iso

BUSY_TIMEOUT_MS = 5000

_UPSERT_ROW = (
    f"INSERT INTO requests ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in ROW_COLUMNS if c != "id")
)


def _row_values(row: Row) -> tuple[Any, ...]:
    values = []
    for column in ROW_COLUMNS:
        value = getattr(row, column)
        if column == "properties":
            value = orjson.dumps(value).decode()
        elif column == "is_stream":
            value = int(value)
        values.append(value)
    return tuple(values)


def shape_request(
    row: Mapping[str, Any],
    feedback: Mapping[str, Any] | None,
    scores: Mapping[str, float],
) -> dict[str, Any]:
    """A stored row as the API and the CLI present it: JSON columns parsed, booleans typed."""
    out = dict(row)
    out["is_stream"] = bool(out["is_stream"])
    out["properties"] = orjson.loads(out["properties"] or "{}")
    for column in ("request_body", "response_body", "request_headers"):
        text = out.get(column)
        if text is None:
            continue
        try:
            out[column] = orjson.loads(text)
        except orjson.JSONDecodeError:
            out[column] = text
    out["feedback"] = (
        None
        if feedback is None
        else {
            "rating": bool(feedback["rating"]),
            "comment": feedback["comment"],
            "created_at": feedback["created_at"],
            "updated_at": feedback["updated_at"],
        }
    )
    out["scores"] = dict(scores)
    return out


class SQLiteStore:
    """SQLite behind the Store interface. Writes go through one connection, reads another."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"sqlite:{path}"
        self._write: aiosqlite.Connection | None = None
        self._read: aiosqlite.Connection | None = None
        # Transactions on the writer connection must not interleave.
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    async def open(self) -> list[str]:
        parent = Path(self.path).parent
        if self.path != ":memory:" and not parent.is_dir():
            raise StoreError(f"directory {parent} does not exist")
        try:
            self._write = await self._connect()
            await self._write.execute("PRAGMA journal_mode = WAL")
            applied = await self.migrate()
            self._read = await self._connect()
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        return applied

    async def close(self) -> None:
        for conn in (self._read, self._write):
            if conn is not None:
                await conn.close()
        self._read = self._write = None

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._write is None:
            raise StoreError("store is not open")
        return self._write

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._read is None:
            raise StoreError("store is not open")
        return self._read

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One IMMEDIATE transaction on the writer connection; sqlite errors become StoreError."""
        conn = self.writer
        try:
            async with self._write_lock:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc

    async def migrate(self) -> list[str]:
        await self.writer.execute(MIGRATIONS_TABLE)
        async with self.writer.execute("SELECT name FROM relaylog_migrations") as cursor:
            done = {r[0] for r in await cursor.fetchall()}
        applied = []
        for name, migration in MIGRATIONS:
            if name in done:
                continue
            async with self._transaction() as conn:
                for statement in migration(SQLITE):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO relaylog_migrations (name, applied_at) VALUES (?, ?)",
                    (name, utc_iso(time.time())),
                )
            applied.append(name)
        return applied

    async def ping(self) -> None:
        try:
            async with self.reader.execute("SELECT 1") as cursor:
                await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(str(exc)) from exc

    async def write_batch(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        async with self._transaction() as conn:
            await conn.executemany(_UPSERT_ROW, [_row_values(r) for r in rows])
            await conn.executemany(
                "DELETE FROM request_properties WHERE request_id = ?", [(r.id,) for r in rows]
            )
            props = [(r.id, k, v) for r in rows for k, v in r.properties.items()]
            if props:
                await conn.executemany(
                    "INSERT INTO request_properties (request_id, key, value) VALUES (?, ?, ?)",
                    props,
                )

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            async with self.reader.execute(sql, tuple(params)) as cursor:
                return [dict(r) for r in await cursor.fetchall()]
        except sqlite3.Error as exc:
            raise StoreError(f"query failed: {exc}") from exc

    async def get_request(self, request_id: str) -> dict[str, Any] | None:
        rows = await self.fetch("SELECT * FROM requests WHERE id = ?", (request_id,))
        if not rows:
            return None
        feedback = await self.fetch("SELECT * FROM feedback WHERE request_id = ?", (request_id,))
        scores = await self.fetch(
            "SELECT name, value FROM scores WHERE request_id = ? ORDER BY name", (request_id,)
        )
        return shape_request(
            rows[0], feedback[0] if feedback else None, {s["name"]: s["value"] for s in scores}
        )

    async def request_exists(self, request_id: str) -> bool:
        return bool(await self.fetch("SELECT 1 FROM requests WHERE id = ?", (request_id,)))

    async def session_exists(self, session_id: str) -> bool:
        return bool(
            await self.fetch("SELECT 1 FROM requests WHERE session_id = ? LIMIT 1", (session_id,))
        )

    async def _write_one(self, sql: str, params: Sequence[Any]) -> dict[str, Any]:
        try:
            async with self._write_lock, self.writer.execute(sql, tuple(params)) as cursor:
                row = await cursor.fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc
        assert row is not None
        return dict(row)

    async def upsert_feedback(
        self, request_id: str, rating: bool, comment: str | None
    ) -> dict[str, Any]:
        now = utc_iso(time.time())
        row = await self._write_one(
            "INSERT INTO feedback (request_id, rating, comment, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(request_id) DO UPDATE SET "
            "rating = excluded.rating, comment = excluded.comment, "
            "updated_at = excluded.updated_at RETURNING *",
            (request_id, int(rating), comment, now, now),
        )
        row["rating"] = bool(row["rating"])
        return row

    async def upsert_session_feedback(self, session_id: str, rating: bool) -> dict[str, Any]:
        now = utc_iso(time.time())
        row = await self._write_one(
            "INSERT INTO session_feedback (session_id, rating, created_at, updated_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(session_id) DO UPDATE SET "
            "rating = excluded.rating, updated_at = excluded.updated_at RETURNING *",
            (session_id, int(rating), now, now),
        )
        row["rating"] = bool(row["rating"])
        return row

    async def upsert_scores(self, request_id: str, scores: Mapping[str, float]) -> dict[str, float]:
        now = utc_iso(time.time())
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO scores (request_id, name, value, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(request_id, name) DO UPDATE SET "
                "value = excluded.value, updated_at = excluded.updated_at",
                [(request_id, name, float(v), now, now) for name, v in scores.items()],
            )
        return dict(scores)
