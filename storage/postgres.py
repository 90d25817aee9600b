"""The PostgreSQL store (asyncpg): the same schema and behaviour as SQLite, shared by replicas.

A read under storage.base.read_deadline passes the time left to asyncpg, which cancels the
statement on the server when it runs out; a cancelled call is cancelled on the server too.
"""

from __future__ import annotations

import functools
import re
import time
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from storage.base import READ_DEADLINE
from storage.errors import NoStore, QueryTimeout, RowRejected, StoreError
from storage.migrations import POSTGRES
from storage.models import redact
from storage.sql import SCHEMA_PROBE, SqlStore, Tx

try:
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None

SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# One lock id for every relaylog replica migrating the same database.
MIGRATION_LOCK = zlib.crc32(b"relaylog-migrations")
# Held by each transaction that changes rollups (writes, feedback, scores) until it commits.
ROLLUP_LOCK = zlib.crc32(b"relaylog-rollups")
_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?")
# Statements whose numbered form is kept (the same few run again and again).
NUMBERED_STATEMENTS = 256


@functools.lru_cache(maxsize=NUMBERED_STATEMENTS)
def to_numbered(sql: str) -> str:
    """Rewrite `?` placeholders as `$1, $2, ...`, leaving quoted strings alone.

    Kept per statement: the writer's row upsert alone took ~40 us to rewrite, every batch.
    """
    count = 0

    def number(match: re.Match[str]) -> str:
        nonlocal count
        if match.group(0) != "?":
            return match.group(0)
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, sql)


def split_url(url: str) -> tuple[str, str | None]:
    """Take relaylog's own `schema=NAME` query option out of a postgresql:// URL."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    if schema is not None and not SCHEMA_RE.fullmatch(schema):
        raise StoreError(f"schema {schema!r} must match {SCHEMA_RE.pattern}")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    return urlunsplit(parts._replace(query=rest)), schema


class _PostgresTx:
    """A transaction on one pooled connection; `?` placeholders are numbered for asyncpg."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(to_numbered(sql), *params)

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.conn.executemany(to_numbered(sql), rows)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in await self.conn.fetch(to_numbered(sql), *params)]


class PostgresStore(SqlStore):
    """PostgreSQL behind the Store interface, through an asyncpg pool."""

    dialect = POSTGRES

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        if asyncpg is None:
            raise StoreError("the PostgreSQL store needs asyncpg: pip install 'relaylog[postgres]'")
        self.dsn, self.schema = split_url(url)
        self.description = redact(url)
        self.pool_size = pool_size
        self._pool: Any = None

    async def open(self, *, create: bool = True) -> list[str]:
        settings = {"search_path": self.schema} if self.schema else {}
        try:
            if self.schema and create:
                conn = await asyncpg.connect(self.dsn)
                try:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                finally:
                    await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self.pool_size, server_settings=settings
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot open {self.description}: {exc}") from exc
        if not create and not await self.fetch(SCHEMA_PROBE["postgres"]):
            await self.close()
            raise NoStore(f"no relaylog store in {self.description} (no relaylog tables there)")
        return await self.migrate()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> Any:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield _PostgresTx(conn)
        except (
            asyncpg.DataError,
            asyncpg.IntegrityConstraintViolationError,
            ValueError,
            TypeError,
            OverflowError,
        ) as exc:
            raise RowRejected(f"write refused: {exc}") from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"write failed: {exc}") from exc

    async def migration_lock(self, tx: Tx) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))

    async def rollup_lock(self, tx: Tx) -> None:
        """Replicas change rollups one transaction at a time, so none reads a stale row.

        A write and a rating of the same request on two replicas would otherwise each miss the
        other's uncommitted part (READ COMMITTED), and the rating would never be rolled up.
        """
        await tx.execute("SELECT pg_advisory_xact_lock(?)", (ROLLUP_LOCK,))

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        deadline = READ_DEADLINE.get()
        if deadline is None:
            try:
                async with self.pool.acquire() as conn:
                    records = await conn.fetch(to_numbered(sql), *params)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreError(f"query failed: {exc}") from exc
            return [dict(r) for r in records]
        try:
            async with self.pool.acquire(timeout=_left(deadline)) as conn:
                records = await conn.fetch(to_numbered(sql), *params, timeout=_left(deadline))
        except TimeoutError as exc:  # asyncpg cancelled the statement on the server
            raise QueryTimeout from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"query failed: {exc}") from exc
        return [dict(r) for r in records]


def _left(deadline: float) -> float:
    """Seconds until `deadline`; QueryTimeout once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise QueryTimeout
    return left
