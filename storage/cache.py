"""Cache entries in the store: lookup, insert with oldest-first eviction, expiry and purge."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage.sql import Tx


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored answer of a cache key's bucket."""

    key: str
    bucket: int
    status: int
    content_type: str
    is_stream: bool
    body: str
    source_request_id: str | None
    model: str | None
    path: str
    seed: str
    created_at: float
    expires_at: float

    @property
    def size(self) -> int:
        return len(self.body.encode()) + len(self.key) + len(self.content_type) + len(self.path)


@dataclass(frozen=True, slots=True)
class CacheFilter:
    """Which entries a purge removes; every field left None matches all."""

    model: str | None = None
    path: str | None = None
    seed: str | None = None
    before: float | None = None


ENTRY_COLUMNS = (
    "key, bucket, status, content_type, is_stream, body, source_request_id, model, path, seed, "
    "created_at, expires_at"
)

INSERT_ENTRY = (
    f"INSERT INTO cache_entries ({ENTRY_COLUMNS}, size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(key, bucket) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}"
        for c in (
            "status",
            "content_type",
            "is_stream",
            "body",
            "source_request_id",
            "model",
            "path",
            "seed",
            "created_at",
            "expires_at",
            "size",
        )
    )
)

# Keep the newest entries whose sizes add up to the budget; delete the older rest.
EVICT = (
    "DELETE FROM cache_entries WHERE (key, bucket) IN ("
    " SELECT key, bucket FROM ("
    "  SELECT key, bucket,"
    "   SUM(size) OVER (ORDER BY created_at DESC, key DESC, bucket DESC) AS running"
    "  FROM cache_entries) AS ranked"
    " WHERE running > ?)"
)


def _entry(row: dict[str, Any]) -> CacheEntry:
    return CacheEntry(
        key=row["key"],
        bucket=int(row["bucket"]),
        status=int(row["status"]),
        content_type=row["content_type"],
        is_stream=bool(row["is_stream"]),
        body=row["body"],
        source_request_id=row["source_request_id"],
        model=row["model"],
        path=row["path"],
        seed=row["seed"],
        created_at=float(row["created_at"]),
        expires_at=float(row["expires_at"]),
    )


def purge_where(where: CacheFilter) -> tuple[str, list[Any]]:
    """The WHERE clause and parameters of a purge."""
    clauses: list[str] = ["1 = 1"]
    params: list[Any] = []
    for column, value in (("model", where.model), ("path", where.path), ("seed", where.seed)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if where.before is not None:
        clauses.append("created_at < ?")
        params.append(where.before)
    return " AND ".join(clauses), params


class CacheStore:
    """The cache operations of a SQL store (mixed into SqlStore)."""

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def cache_get(self, key: str, now: float) -> list[CacheEntry]:
        """The unexpired entries of `key`, by bucket."""
        rows = await self.fetch(
            f"SELECT {ENTRY_COLUMNS} FROM cache_entries "
            "WHERE key = ? AND expires_at > ? ORDER BY bucket",
            (key, now),
        )
        return [_entry(row) for row in rows]

    async def cache_put(self, entry: CacheEntry) -> None:
        """Store `entry`, replacing what its key and bucket held."""
        async with self.transaction() as tx:
            await tx.execute(
                INSERT_ENTRY,
                (
                    entry.key,
                    entry.bucket,
                    entry.status,
                    entry.content_type,
                    int(entry.is_stream),
                    entry.body,
                    entry.source_request_id,
                    entry.model,
                    entry.path,
                    entry.seed,
                    entry.created_at,
                    entry.expires_at,
                    entry.size,
                ),
            )

    async def cache_sweep(self, max_bytes: int, now: float) -> int:
        """Drop expired entries, then the oldest until `max_bytes` hold the rest; how many went."""
        async with self.transaction() as tx:
            expired = await tx.fetchall(
                "DELETE FROM cache_entries WHERE expires_at <= ? RETURNING key", (now,)
            )
            evicted = await tx.fetchall(EVICT + " RETURNING key", (max_bytes,))
        return len(expired) + len(evicted)

    async def cache_clear(self, where: CacheFilter) -> int:
        """Delete the entries `where` matches; how many were deleted."""
        clause, params = purge_where(where)
        async with self.transaction() as tx:
            rows = await tx.fetchall(
                f"DELETE FROM cache_entries WHERE {clause} RETURNING key", params
            )
        return len(rows)

    async def cache_stats(self) -> dict[str, int]:
        rows = await self.fetch(
            "SELECT COUNT(*) AS entries, COALESCE(SUM(size), 0) AS bytes FROM cache_entries"
        )
        return {"entries": int(rows[0]["entries"]), "bytes": int(rows[0]["bytes"])}
