"""Retention: delete old exchanges, and clear old bodies, in small batches.

Each batch is one short write transaction of at most `batch_rows` requests (with their
properties, feedback, scores and rated row), and the pruner pauses between batches at least
as long as the batch took, so it holds the write lock at most half the time, the log writer
never waits long for it, and logging keeps flowing through a prune of millions of rows. Rows
that belong to a dataset are kept: a dataset is curated on purpose.

The earlier exchanges of reused ids (request_history) follow the same cutoffs by the time they
were replaced, which is after they were made: older than `before` they are deleted, older than
`bodies_before` their request and response bodies are cleared from the kept record. A deleted
request takes its history with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from storage.base import Store
from storage.sql import chunked

# 500 rows of a million-row SQLite store took 200-400 ms to delete (eight indexes on requests);
# 200 keep each hold of the write lock near 100 ms.
BATCH_ROWS = 200
PAUSE_S = 0.02
# Candidates come oldest first by (created_at, id), continuing after the last batch.
KEEP_DATASET_ROWS = "NOT EXISTS (SELECT 1 FROM dataset_rows dr WHERE dr.request_id = r.id)"
HAS_BODY = "(r.request_body IS NOT NULL OR r.response_body IS NOT NULL)"
ROW_TABLES = ("request_properties", "feedback", "scores", "request_history")
BODY_FIELDS = ("request_body", "response_body")


@dataclass(slots=True)
class PruneReport:
    """What a prune deleted (or, in a dry run, would delete)."""

    requests: int = 0
    bodies: int = 0
    sessions: int = 0
    # Earlier exchanges of reused ids deleted, and those whose bodies were cleared.
    history: int = 0
    history_bodies: int = 0
    batches: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "bodies": self.bodies,
            "session_feedback": self.sessions,
            "history": self.history,
            "history_bodies": self.history_bodies,
            "batches": self.batches,
            "dry_run": self.dry_run,
        }


async def _batch(
    store: Store, condition: str, params: list[Any], after: tuple[str, str] | None, size: int
) -> list[dict[str, Any]]:
    keyset, more = "", []
    if after is not None:
        keyset, more = " AND (r.created_at, r.id) > (?, ?)", list(after)
    return await store.fetch(
        f"SELECT r.id, r.created_at FROM requests r WHERE {condition}{keyset} "
        "ORDER BY r.created_at, r.id LIMIT ?",
        [*params, *more, size],
    )


async def _count(store: Store, condition: str, params: list[Any]) -> int:
    rows = await store.fetch(f"SELECT COUNT(*) AS n FROM requests r WHERE {condition}", params)
    return int(rows[0]["n"])


async def _delete(store: Store, ids: list[str]) -> None:
    statements = []
    for table in ROW_TABLES:
        statements += chunked(f"DELETE FROM {table} WHERE request_id IN ({{ids}})", ids)
    statements += chunked("DELETE FROM rollup_rated WHERE id IN ({ids})", ids)
    statements += chunked("DELETE FROM requests WHERE id IN ({ids})", ids)
    await store.transact(statements)


async def _clear_bodies(store: Store, ids: list[str]) -> None:
    await store.transact(
        chunked(
            "UPDATE requests SET request_body = NULL, response_body = NULL WHERE id IN ({ids})",
            ids,
        )
    )


async def _in_batches(
    store: Store,
    condition: str,
    params: list[Any],
    apply: Callable[[Store, list[str]], Awaitable[None]],
    report: PruneReport,
    batch_rows: int,
    pause_s: float,
) -> int:
    done, after = 0, None
    while True:
        rows = await _batch(store, condition, params, after, batch_rows)
        if not rows:
            return done
        started = time.monotonic()
        await apply(store, [r["id"] for r in rows])
        done += len(rows)
        report.batches += 1
        after = (rows[-1]["created_at"], rows[-1]["id"])
        if len(rows) < batch_rows:
            return done
        await asyncio.sleep(max(pause_s, time.monotonic() - started))


async def prune(
    store: Store,
    before: str | None,
    bodies_before: str | None = None,
    *,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    pause_s: float = PAUSE_S,
) -> PruneReport:
    """Delete exchanges created before `before`, then clear the request and response bodies of
    those created before `bodies_before`. Times are stored UTC text (storage.models.utc_iso);
    None skips that part. A dry run only counts.
    """
    report = PruneReport(dry_run=dry_run)
    if before is not None:
        old = f"r.created_at < ? AND {KEEP_DATASET_ROWS}"
        if dry_run:
            report.requests = await _count(store, old, [before])
        else:
            report.requests = await _in_batches(
                store, old, [before], _delete, report, batch_rows, pause_s
            )
            report.sessions = await _forget_sessions(store)
        report.history = await _history(
            store, before, _drop_history, _every_entry, dry_run, batch_rows, pause_s
        )
    if bodies_before is not None:
        # In a dry run the rows older than `before` are still there: leave them out.
        bodied = f"r.created_at < ? AND {HAS_BODY} AND {KEEP_DATASET_ROWS}"
        params: list[Any] = [bodies_before]
        if dry_run and before is not None:
            bodied += " AND r.created_at >= ?"
            params.append(before)
        if dry_run:
            report.bodies = await _count(store, bodied, params)
        else:
            report.bodies = await _in_batches(
                store, bodied, params, _clear_bodies, report, batch_rows, pause_s
            )
        report.history_bodies = await _history(
            store, bodies_before, _strip_history, _has_bodies, dry_run, batch_rows, pause_s, before
        )
    return report


HistoryKey = tuple[str, int]
HistoryWork = Callable[[Store, list[dict[str, Any]]], Awaitable[int]]
HistoryTest = Callable[[dict[str, Any]], bool]


async def _history(
    store: Store,
    cutoff: str,
    apply: HistoryWork,
    changes: HistoryTest,
    dry_run: bool,
    batch_rows: int,
    pause_s: float,
    kept_from: str | None = None,
) -> int:
    """Apply `apply` to the history entries replaced before `cutoff` (and, when `kept_from` is
    given, at or after it: older ones are deleted by the same prune). One pass in primary key
    order, `batch_rows` entries a transaction; a dry run counts the entries `changes` says
    `apply` would change."""
    condition, params = "replaced_at < ?", [cutoff]
    if kept_from is not None and dry_run:
        condition += " AND replaced_at >= ?"
        params.append(kept_from)
    done, after = 0, ("", 0)
    while True:
        rows = await store.fetch(
            "SELECT request_id, seq, record FROM request_history "
            f"WHERE {condition} AND (request_id > ? OR (request_id = ? AND seq > ?)) "
            "ORDER BY request_id, seq LIMIT ?",
            [*params, after[0], after[0], after[1], batch_rows],
        )
        if not rows:
            return done
        started = time.monotonic()
        if dry_run:
            done += sum(1 for r in rows if changes(r))
        else:
            done += await apply(store, rows)
        after = (rows[-1]["request_id"], int(rows[-1]["seq"]))
        if len(rows) < batch_rows:
            return done
        await asyncio.sleep(max(pause_s, time.monotonic() - started))


def _every_entry(entry: dict[str, Any]) -> bool:
    return True


def _bodied_record(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The entry's record when it still holds a body or headers, else None."""
    record: dict[str, Any] = orjson.loads(entry["record"])
    return record if any(record.get(field) is not None for field in BODY_FIELDS) else None


def _has_bodies(entry: dict[str, Any]) -> bool:
    return _bodied_record(entry) is not None


async def _drop_history(store: Store, rows: list[dict[str, Any]]) -> int:
    await store.transact(
        [
            (
                "DELETE FROM request_history WHERE request_id = ? AND seq = ?",
                [r["request_id"], r["seq"]],
            )
            for r in rows
        ]
    )
    return len(rows)


async def _strip_history(store: Store, rows: list[dict[str, Any]]) -> int:
    statements = []
    for entry in rows:
        record = _bodied_record(entry)
        if record is None:
            continue
        record.update(dict.fromkeys(BODY_FIELDS))
        statements.append(
            (
                "UPDATE request_history SET record = ? WHERE request_id = ? AND seq = ?",
                [orjson.dumps(record).decode(), entry["request_id"], entry["seq"]],
            )
        )
    if statements:
        await store.transact(statements)
    return len(statements)


async def _forget_sessions(store: Store) -> int:
    """Drop session ratings whose session has no logged request left."""
    results = await store.transact(
        [
            (
                "DELETE FROM session_feedback WHERE NOT EXISTS (SELECT 1 FROM requests r "
                "WHERE r.session_id = session_feedback.session_id) RETURNING session_id",
                [],
            )
        ]
    )
    return len(results[0])
