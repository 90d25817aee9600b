"""Reused request ids: an earlier exchange under an id moves to request_history, feedback with it.

An SDK retry resends the same body under the same `Helicone-Request-Id`; its row replaces the
first attempt's and keeps the feedback and scores given so far. A call with a different body under
a used id is a different exchange: the stored one is kept in `request_history` (the whole record
as `relaylog show` gives it, with its feedback, scores and dataset memberships), those are taken
off the id, and the new exchange starts unrated, with a warning on its row.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from storage.models import Row, utc_iso
from storage.query.rows import SELECT_RECORD, present, present_unstored

if TYPE_CHECKING:
    from storage.base import Store
    from storage.sql import Tx

REUSED_WARNING = (
    "Helicone-Request-Id {id!r} was used before for a different request; the earlier exchange, "
    "with its feedback, scores and dataset memberships, is kept in its history "
    "(GET /v1/request/{id}/history)"
)


def _differs(old: str | None, new: str | None) -> bool:
    """Two bodies are known to differ only when both digests are known (older rows have none)."""
    return old is not None and new is not None and old != new


def replaced_calls(rows: Sequence[Row], stored: Mapping[str, str | None]) -> list[Row | str]:
    """What each row of a batch displaces, in order: the id of a stored row, or an earlier row
    of the same batch, whenever the row is a different call under a used id."""
    hashes: dict[str, str | None] = dict(stored)
    pending: dict[str, Row] = {}
    displaced: list[Row | str] = []
    for row in rows:
        if row.id in hashes and _differs(hashes[row.id], row.request_hash):
            earlier = pending.get(row.id)
            displaced.append(row.id if earlier is None else earlier)
        hashes[row.id] = row.request_hash
        pending[row.id] = row
    return displaced


async def keep_history(tx: Tx, displaced: Sequence[Row | str]) -> set[str]:
    """Move each displaced exchange into request_history; the ids whose stored row moved."""
    now = utc_iso(time.time())
    moved: set[str] = set()
    for item in displaced:
        if isinstance(item, str):
            record = await _stored_record(tx, item)
            if record is None:
                continue
            request_id = item
            moved.add(item)
            for table in ("feedback", "scores", "dataset_rows"):
                await tx.execute(f"DELETE FROM {table} WHERE request_id = ?", (item,))
        else:
            request_id, record = item.id, present_unstored(item)
        seq = await tx.fetchall(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM request_history WHERE request_id = ?",
            (request_id,),
        )
        await tx.execute(
            "INSERT INTO request_history (request_id, seq, replaced_at, record) "
            "VALUES (?, ?, ?, ?)",
            (request_id, int(seq[0]["next"]), now, orjson.dumps(record).decode()),
        )
    return moved


async def _stored_record(tx: Tx, request_id: str) -> dict[str, Any] | None:
    rows = await tx.fetchall(f"{SELECT_RECORD} WHERE r.id = ?", (request_id,))
    if not rows:
        return None
    scores = await tx.fetchall(
        "SELECT name, value FROM scores WHERE request_id = ? ORDER BY name", (request_id,)
    )
    datasets = await tx.fetchall(
        "SELECT d.name FROM dataset_rows dr JOIN datasets d ON d.id = dr.dataset_id "
        "WHERE dr.request_id = ? ORDER BY d.name",
        (request_id,),
    )
    record = present(rows[0], {s["name"]: float(s["value"]) for s in scores})
    record["datasets"] = [d["name"] for d in datasets]
    return record


def with_reuse_warning(warnings: str | None, request_id: str) -> str:
    """The row's warnings (a JSON list or NULL) with the reused-id warning added."""
    listed: list[str] = orjson.loads(warnings) if warnings else []
    listed.append(REUSED_WARNING.format(id=request_id))
    return orjson.dumps(listed).decode()


async def request_history(store: Store, request_id: str) -> list[dict[str, Any]]:
    """The earlier exchanges of `request_id`, oldest first, each with when it was replaced."""
    rows = await store.fetch(
        "SELECT seq, replaced_at, record FROM request_history WHERE request_id = ? ORDER BY seq",
        (request_id,),
    )
    return [
        {"seq": int(r["seq"]), "replaced_at": r["replaced_at"], **orjson.loads(r["record"])}
        for r in rows
    ]
