"""Pages of matching rows: sort orders, offsets and the opaque cursor for deep pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from storage import Store
from storage.errors import QueryError
from storage.models import ROW_COLUMNS
from storage.query.counts import semijoins
from storage.query.filters import Condition, compile_filter
from storage.query.rows import helicone_row, scores_for

# A sort name and the SQL it orders by; NULL sorts as -1 (before 0 ascending) in every store.
SORTS = {
    "created_at": "r.created_at",
    "latency": "COALESCE(r.latency_ms, -1)",
    "cost": "COALESCE(r.cost_usd, -1)",
}
SORT_ALIASES = {"latency_ms": "latency", "cost_usd": "cost"}

Direction = Literal["asc", "desc"]
# A page reads the newest rows until it is full: quick for one feedback or score test (a page
# of rated rows is among the newest few thousand), slow for two (rated down AND scored over 90
# is a few hundred rows of a million). From two such tests on, the page starts from the rated
# and scored requests instead (storage.query.counts.semijoins; the rows are the same).
MIN_SEMIJOINS = 2


@dataclass(slots=True)
class PageQuery:
    """Which page: a filter tree, one sort order, and an offset or a cursor to go on from."""

    filter: Any = "all"
    sort: str = "created_at"
    direction: Direction = "desc"
    limit: int = 100
    offset: int = 0
    cursor: str | None = None


@dataclass(slots=True)
class Page:
    """One keyset page (requests, sessions, users) and the cursor to the next (None on the last)."""

    rows: list[dict[str, Any]]
    next_cursor: str | None


def pack_cursor(*parts: Any) -> str:
    """An opaque cursor holding `parts` (the sort and the last row's keys)."""
    return base64.urlsafe_b64encode(orjson.dumps(parts)).decode().rstrip("=")


def unpack_cursor(cursor: str, size: int) -> list[Any]:
    """The `size` parts pack_cursor() put in `cursor`; QueryError for anything else."""
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise QueryError("invalid cursor") from None
    if not isinstance(parts, list) or len(parts) != size:
        raise QueryError("invalid cursor")
    return parts


def encode_cursor(sort: str, direction: str, value: Any, last_id: str) -> str:
    return pack_cursor(sort, direction, value, last_id)


def decode_cursor(cursor: str, sort: str, direction: str) -> tuple[Any, str]:
    """The (sort value, id) a cursor continues after; QueryError unless it is from this sort."""
    kind, order, value, last_id = unpack_cursor(cursor, 4)
    expected = str if sort == "created_at" else float | int
    if (kind, order) != (sort, direction) or not isinstance(last_id, str):
        raise QueryError("the cursor belongs to another sort order")
    if isinstance(value, bool) or not isinstance(value, expected) or "\x00" in f"{value}{last_id}":
        raise QueryError("invalid cursor")
    return value, last_id


async def query_page(store: Store, query: PageQuery) -> Page:
    """One page of matching rows in Helicone's shape, and the cursor to the next page."""
    condition = compile_filter(query.filter)
    sort, direction = query.sort, query.direction
    order_by = SORTS[sort]
    where, params = [condition.sql], list(condition.params)
    hints = semijoins(query.filter)
    if len(hints) >= MIN_SEMIJOINS:
        for hint in hints:
            where.append(hint.sql)
            params += hint.params
    if query.cursor is not None:
        value, last_id = decode_cursor(query.cursor, sort, direction)
        where.append(f"({order_by}, r.id) {'<' if direction == 'desc' else '>'} (?, ?)")
        params += [value, last_id]
    rows = await store.fetch(
        f"SELECT r.*, {order_by} AS sort_key, f.rating AS feedback_rating, "
        "f.comment AS feedback_comment, sf.rating AS session_rating FROM requests r "
        "LEFT JOIN feedback f ON f.request_id = r.id "
        "LEFT JOIN session_feedback sf ON sf.session_id = r.session_id "
        f"WHERE ({') AND ('.join(where)}) "
        f"ORDER BY {order_by} {direction.upper()}, r.id {direction.upper()} LIMIT ? OFFSET ?",
        [*params, query.limit, query.offset],
    )
    scores = await scores_for(store, [r["id"] for r in rows])
    next_cursor = None
    if len(rows) == query.limit:
        last = rows[-1]
        next_cursor = encode_cursor(sort, direction, last["sort_key"], last["id"])
    return Page([helicone_row(r, scores.get(r["id"], {})) for r in rows], next_cursor)


async def newest_rows(
    store: Store, condition: Condition, columns: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """`columns` of the newest `limit` matching rows, newest first."""
    unknown = set(columns) - set(ROW_COLUMNS)
    if unknown:
        raise QueryError(f"unknown columns {', '.join(sorted(unknown))}")
    rows = await store.fetch(
        f"SELECT {', '.join(f'r.{c}' for c in columns)} FROM requests r WHERE {condition.sql} "
        "ORDER BY r.created_at DESC, r.id DESC LIMIT ?",
        [*condition.params, max(1, limit)],
    )
    return rows
