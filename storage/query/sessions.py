"""Sessions for the sessions pages: the list (newest activity first) and one session's requests.

Without a filter the list reads the writer-maintained rollup_sessions through its (last_at,
session_id) index; with one, the matching requests are grouped by session. Both are keyset
pages after the last row's (last_at, session_id). A session's requests come from the
requests_session index, oldest first, with the session's rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage import Store
from storage.errors import QueryError
from storage.query.filters import ALL, Condition
from storage.query.pages import Page, pack_cursor, unpack_cursor

MAX_LIMIT = 500
MAX_SEARCH = 200
MAX_REQUESTS = 1000
ROLLUP = "rollup_sessions"
GROUPED = (
    "(SELECT r.session_id AS session_id, MAX(r.session_name) AS name, "
    "MIN(r.created_at) AS first_at, MAX(r.created_at) AS last_at, COUNT(*) AS requests, "
    "SUM(r.prompt_tokens) AS prompt_tokens, SUM(r.completion_tokens) AS completion_tokens, "
    "SUM(r.total_tokens) AS total_tokens, SUM(r.cost_usd) AS cost_usd FROM requests r "
    "WHERE r.session_id IS NOT NULL AND ({condition}) GROUP BY r.session_id)"
)
COLUMNS = (
    "s.session_id AS session_id, s.name AS name, s.first_at AS first_at, s.last_at AS last_at, "
    "s.requests AS requests, s.prompt_tokens AS prompt_tokens, "
    "s.completion_tokens AS completion_tokens, s.total_tokens AS total_tokens, "
    "s.cost_usd AS cost_usd, sf.rating AS rating, sf.updated_at AS rated_at"
)
REQUEST_COLUMNS = (
    "id",
    "created_at",
    "session_path",
    "session_name",
    "model",
    "status",
    "outcome",
    "latency_ms",
    "ttft_ms",
    "total_tokens",
    "cost_usd",
    "user_id",
    "prompt_preview",
)


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which page of sessions: text in the name or id, the page size, the cursor to go on."""

    search: str | None = None
    limit: int = 50
    cursor: str | None = None


def _encode(last_at: str, session_id: str) -> str:
    return pack_cursor(last_at, session_id)


def _decode(cursor: str) -> tuple[str, str]:
    last_at, session_id = unpack_cursor(cursor, 2)
    if not isinstance(last_at, str) or not isinstance(session_id, str):
        raise QueryError("invalid cursor")
    if "\x00" in last_at + session_id:
        raise QueryError("invalid cursor")
    return last_at, session_id


def _number(value: Any) -> float:
    return 0.0 if value is None else float(value)


def _rating(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _session(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "name": row["name"],
        "first_at": row["first_at"],
        "last_at": row["last_at"],
        "requests": int(row["requests"]),
        "prompt_tokens": int(_number(row["prompt_tokens"])),
        "completion_tokens": int(_number(row["completion_tokens"])),
        "total_tokens": int(_number(row["total_tokens"])),
        "cost_usd": round(_number(row["cost_usd"]), 9),
        "rating": _rating(row["rating"]),
        "rated_at": row["rated_at"],
    }


def _contains(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def session_page(store: Store, condition: Condition, query: SessionQuery) -> Page:
    """One page of sessions with requests matching `condition`, latest activity first.

    Each row: session_id, name, first_at, last_at, requests, prompt/completion/total tokens,
    cost_usd (of the matching requests), rating (the session's feedback: True, False or None)
    and rated_at. `query.search` keeps sessions whose id or name contains it (any case).
    """
    if not 1 <= query.limit <= MAX_LIMIT:
        raise QueryError(f"limit must be 1-{MAX_LIMIT}, got {query.limit}")
    if condition.sql == ALL.sql:
        source, params = ROLLUP, []
    else:
        source, params = GROUPED.replace("{condition}", condition.sql), list(condition.params)
    where = ["s.requests > 0"]
    search = (query.search or "").strip()
    if search:
        if len(search) > MAX_SEARCH or "\x00" in search:
            raise QueryError(f"search for 1-{MAX_SEARCH} characters")
        where.append(
            "(lower(s.session_id) LIKE lower(CAST(? AS TEXT)) ESCAPE '\\' "
            "OR lower(s.name) LIKE lower(CAST(? AS TEXT)) ESCAPE '\\')"
        )
        params += [_contains(search)] * 2
    if query.cursor is not None:
        where.append("(s.last_at, s.session_id) < (?, ?)")
        params += list(_decode(query.cursor))
    rows = await store.fetch(
        f"SELECT {COLUMNS} FROM {source} s "
        "LEFT JOIN session_feedback sf ON sf.session_id = s.session_id "
        f"WHERE {' AND '.join(where)} ORDER BY s.last_at DESC, s.session_id DESC LIMIT ?",
        [*params, query.limit],
    )
    sessions = [_session(row) for row in rows]
    next_cursor = None
    if len(sessions) == query.limit:
        next_cursor = _encode(sessions[-1]["last_at"], sessions[-1]["session_id"])
    return Page(sessions, next_cursor)


async def session_detail(
    store: Store, session_id: str, limit: int = MAX_REQUESTS
) -> dict[str, Any] | None:
    """A session's totals and rating (as session_page's rows) with `rows`: its first
    `limit` requests, oldest first, each with REQUEST_COLUMNS; `truncated` says whether it has
    more. None when no request of the session was logged."""
    if not 1 <= limit <= MAX_REQUESTS:
        raise QueryError(f"limit must be 1-{MAX_REQUESTS}, got {limit}")
    found = await store.fetch(
        f"SELECT {COLUMNS} FROM rollup_sessions s "
        "LEFT JOIN session_feedback sf ON sf.session_id = s.session_id "
        "WHERE s.session_id = ? AND s.requests > 0",
        [session_id],
    )
    if not found:
        return None
    rows = await store.fetch(
        f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests WHERE session_id = ? "
        "ORDER BY created_at, id LIMIT ?",
        [session_id, limit + 1],
    )
    return {**_session(found[0]), "rows": rows[:limit], "truncated": len(rows) > limit}
