"""Per-user totals for the users page: requests, tokens, cost, first and last seen, feedback.

Without a filter the writer-maintained rollup_users answers, one row per user; with a filter
the matching requests are grouped by user (a time range or a model has no per-user rollup).
Pages are keyset: after the last row's (sort value, user id), so a deep page costs the same
as the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from storage import Store
from storage.errors import QueryError
from storage.query.filters import ALL, Condition
from storage.query.pages import Page, pack_cursor, unpack_cursor

UserSort = Literal["requests", "cost", "last_seen"]
# What each sort orders by (descending, then user id ascending); NULL cost sorts as 0.
SORTS: dict[str, str] = {
    "requests": "u.requests",
    "cost": "COALESCE(u.cost_usd, 0)",
    "last_seen": "u.last_at",
}
MAX_LIMIT = 500
COLUMNS = (
    "u.user_id AS user_id, u.requests AS requests, u.prompt_tokens AS prompt_tokens, "
    "u.completion_tokens AS completion_tokens, u.total_tokens AS total_tokens, "
    "u.cost_usd AS cost_usd, u.first_at AS first_at, u.last_at AS last_at, u.rated AS rated, "
    "u.positive AS positive"
)
ROLLUP = (
    "SELECT user_id, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, "
    "first_at, last_at, rated, positive FROM rollup_users WHERE requests > 0"
)
GROUPED = (
    "SELECT r.user_id AS user_id, COUNT(*) AS requests, SUM(r.prompt_tokens) AS prompt_tokens, "
    "SUM(r.completion_tokens) AS completion_tokens, SUM(r.total_tokens) AS total_tokens, "
    "SUM(r.cost_usd) AS cost_usd, MIN(r.created_at) AS first_at, MAX(r.created_at) AS last_at, "
    "COUNT(uf.rating) AS rated, COALESCE(SUM(uf.rating), 0) AS positive FROM requests r "
    "LEFT JOIN feedback uf ON uf.request_id = r.id "
    "WHERE r.user_id IS NOT NULL AND ({condition}) GROUP BY r.user_id"
)


@dataclass(frozen=True, slots=True)
class UserQuery:
    """Which page of users: the sort (largest first), its size, the cursor to go on from."""

    sort: UserSort = "requests"
    limit: int = 50
    cursor: str | None = None


def _encode(sort: str, value: Any, user_id: str) -> str:
    return pack_cursor(sort, value, user_id)


def _decode(cursor: str, sort: str) -> tuple[Any, str]:
    """The (sort value, user id) a cursor continues after; QueryError for another sort's."""
    kind, value, user_id = unpack_cursor(cursor, 3)
    expected = str if sort == "last_seen" else int | float
    if kind != sort:
        raise QueryError("the cursor belongs to another sort order")
    if not isinstance(user_id, str) or isinstance(value, bool) or not isinstance(value, expected):
        raise QueryError("invalid cursor")
    if "\x00" in f"{value}{user_id}":
        raise QueryError("invalid cursor")
    return value, user_id


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _user(row: dict[str, Any]) -> dict[str, Any]:
    rated, positive = int(row["rated"]), int(_number(row["positive"]))
    return {
        "user_id": row["user_id"],
        "requests": int(row["requests"]),
        "prompt_tokens": int(_number(row["prompt_tokens"])),
        "completion_tokens": int(_number(row["completion_tokens"])),
        "total_tokens": int(_number(row["total_tokens"])),
        "cost_usd": round(_number(row["cost_usd"]), 9),
        "first_at": row["first_at"],
        "last_at": row["last_at"],
        "rated": rated,
        "positive": positive,
        "positive_rate": round(positive / rated, 6) if rated else None,
    }


async def user_page(store: Store, condition: Condition, query: UserQuery) -> Page:
    """One page of users with requests matching `condition`, largest `query.sort` first.

    Each row: user_id, requests, prompt/completion/total tokens, cost_usd, first_at and
    last_at (of the matching requests), rated, positive and positive_rate (None: unrated).
    The unfiltered list reads rollup_users alone; a filter groups the matching rows.
    """
    if query.sort not in SORTS:
        raise QueryError(f"cannot sort users by {query.sort!r}; use {', '.join(SORTS)}")
    if not 1 <= query.limit <= MAX_LIMIT:
        raise QueryError(f"limit must be 1-{MAX_LIMIT}, got {query.limit}")
    if condition.sql == ALL.sql:
        source, params = ROLLUP, []
    else:
        source, params = GROUPED.replace("{condition}", condition.sql), list(condition.params)
    order = SORTS[query.sort]
    where = ""
    if query.cursor is not None:
        value, user_id = _decode(query.cursor, query.sort)
        where = f"WHERE {order} < ? OR ({order} = ? AND u.user_id > ?)"
        params += [value, value, user_id]
    rows = await store.fetch(
        f"SELECT {COLUMNS}, {order} AS sort_key FROM ({source}) u {where} "
        f"ORDER BY {order} DESC, u.user_id ASC LIMIT ?",
        [*params, query.limit],
    )
    next_cursor = None
    if len(rows) == query.limit:
        last = rows[-1]
        value = last["sort_key"]
        key: Any = str(value) if query.sort == "last_seen" else _number(value)
        if query.sort == "requests":
            key = int(key)
        next_cursor = _encode(query.sort, key, last["user_id"])
    return Page([_user(row) for row in rows], next_cursor)
