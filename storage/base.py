"""The store interface every backend implements, open_store() to pick one from a URL, and
read_deadline(): a time limit every read in its context honours by stopping the statement."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from storage.cache import CacheEntry, CacheFilter
from storage.models import UNCHANGED, Row, Unchanged
from storage.ratelimit import WindowUsage

# The time.monotonic() instant by which reads in this context must end; None is no limit.
READ_DEADLINE: ContextVar[float | None] = ContextVar("relaylog_read_deadline", default=None)


@contextmanager
def read_deadline(seconds: float) -> Iterator[float]:
    """Every `fetch` in this context (and in tasks started from it) ends within `seconds`: a
    statement still running then is stopped by the store and raises QueryTimeout. A deadline set
    outside that falls earlier stays in force. Yields the deadline (time.monotonic())."""
    if not seconds > 0:
        raise ValueError(f"a read deadline must be a positive number of seconds, not {seconds!r}")
    deadline = time.monotonic() + seconds
    outer = READ_DEADLINE.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = READ_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        READ_DEADLINE.reset(token)


class Store(Protocol):
    """Named operations for the recorder, the API and the CLI; they raise storage.errors.

    `fetch`, `fetch_in` and `transact` run SQL and are for storage's own read model
    (storage/query), never for callers outside storage.
    """

    description: str

    async def open(self, *, create: bool = True) -> list[str]:
        """Connect and bring the schema up to date; return the migrations applied. With
        `create=False` a database without relaylog's schema is NoStore and is left as it was."""

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied."""

    async def ping(self) -> None:
        """Raise StoreError when the store cannot answer."""

    async def write_batch(self, rows: Sequence[Row]) -> None:
        """Upsert rows in one transaction; a reused id replaces the exchange."""

    async def get_request(self, request_id: str) -> dict[str, Any] | None:
        """The whole record (storage.query.rows.present), or None."""

    async def request_exists(self, request_id: str) -> bool: ...

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """The ids among `ids` that name a logged request."""

    async def session_exists(self, session_id: str) -> bool: ...

    async def upsert_feedback(
        self, request_id: str, rating: bool, comment: str | Unchanged | None = UNCHANGED
    ) -> dict[str, Any]:
        """Set the rating; the comment too unless UNCHANGED (None clears it)."""

    async def set_property(self, request_id: str, key: str, value: str) -> bool:
        """Set one property of a logged request; False when no request has that id."""

    async def upsert_session_feedback(self, session_id: str, rating: bool) -> dict[str, Any]: ...

    async def upsert_scores(
        self, request_id: str, scores: Mapping[str, float]
    ) -> dict[str, float]: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a parameterised read query written with `?` placeholders. Under read_deadline a
        statement still running at the deadline is stopped (QueryTimeout); a cancelled call
        stops its statement too."""

    async def fetch_in(
        self, sql: str, ids: Sequence[Any], before: Sequence[Any] = (), after: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """`fetch` with `{ids}` in `sql` bound to every id, a chunk at a time."""

    async def transact(
        self, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[dict[str, Any]]]:
        """Run parameterised statements in one write transaction; each one's result rows."""

    async def cache_get(self, key: str, now: float) -> list[CacheEntry]:
        """The unexpired entries of a cache key, by bucket."""

    async def cache_put(self, entry: CacheEntry) -> None:
        """Store an entry, replacing what its key and bucket held."""

    async def cache_sweep(self, max_bytes: int, now: float) -> int:
        """Drop expired entries, then the oldest until `max_bytes` hold the rest."""

    async def cache_clear(self, where: CacheFilter) -> int:
        """Purge matching entries; how many were deleted."""

    async def cache_stats(self) -> dict[str, int]:
        """Entries and bytes held."""

    async def ratelimit_take(
        self, key: str, quota: float, window_s: float, amount: float, now: float
    ) -> WindowUsage:
        """Count `amount` against a sliding window if it has room, atomically."""

    async def ratelimit_add(self, key: str, amount: float, now: float) -> None:
        """Record use known only after the call (a cost)."""


def open_store(db: str) -> Store:
    """The store for a `--db` value: a postgresql:// URL or a SQLite path."""
    if db.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresStore

        return PostgresStore(db)
    from storage.sqlite import SQLiteStore

    return SQLiteStore(db)
