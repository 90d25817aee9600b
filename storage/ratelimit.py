"""Sliding-window rate-limit counters in the store, exact across replicas sharing it."""

from __future__ import annotations

import zlib
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from storage.migrations import Dialect
    from storage.sql import Tx


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """A segment's use of its window after one take."""

    allowed: bool
    used: float
    # When the oldest event still in the window was recorded (None: the window is empty).
    oldest_at: float | None


def lock_id(key: str) -> int:
    """A signed 64-bit advisory-lock id for one segment key."""
    return zlib.crc32(b"relaylog-ratelimit:" + key.encode()) - 2**31


class RateLimitStore:
    """The rate-limit operations of a SQL store (mixed into SqlStore)."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        raise NotImplementedError

    async def ratelimit_take(
        self, key: str, quota: float, window_s: float, amount: float, now: float
    ) -> WindowUsage:
        """Count `amount` against `key` if the window has room, in one transaction.

        With `amount` 0 (a cost limit, whose cost is known only later) the call passes while
        the window's use is below `quota`; otherwise while use + amount stays within it.
        """
        async with self.transaction() as tx:
            if self.dialect.name == "postgres":
                await tx.execute("SELECT pg_advisory_xact_lock(?)", (lock_id(key),))
            await tx.execute(
                "DELETE FROM ratelimit_events WHERE key = ? AND at <= ?", (key, now - window_s)
            )
            rows = await tx.fetchall(
                "SELECT COALESCE(SUM(amount), 0) AS used, MIN(at) AS oldest "
                "FROM ratelimit_events WHERE key = ?",
                (key,),
            )
            used = float(rows[0]["used"])
            oldest = rows[0]["oldest"]
            allowed = used + amount <= quota if amount > 0 else used < quota
            if allowed and amount > 0:
                await tx.execute(
                    "INSERT INTO ratelimit_events (key, at, amount) VALUES (?, ?, ?)",
                    (key, now, amount),
                )
                used += amount
                oldest = now if oldest is None else oldest
        return WindowUsage(allowed, used, None if oldest is None else float(oldest))

    async def ratelimit_add(self, key: str, amount: float, now: float) -> None:
        """Record use whose amount became known after the call (a cost in cents)."""
        if amount <= 0:
            return
        async with self.transaction() as tx:
            await tx.execute(
                "INSERT INTO ratelimit_events (key, at, amount) VALUES (?, ?, ?)",
                (key, now, amount),
            )
