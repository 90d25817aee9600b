"""The requests list (keyset pages, capped count, live tail) and the request detail drawer.

Every read is a storage/query call the JSON API makes too: query_page for rows (the cursor of
POST /v1/request/query), the capped count, and the store's whole record for the drawer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping

from proxy.dashboard.chat import conversation
from proxy.dashboard.filters import UrlFilter, filter_bar, url_filter
from proxy.dashboard.render import render
from proxy.state import POLICY, SETTINGS, STORE
from storage.errors import QueryError
from storage.query.counts import capped_count
from storage.query.datasets import list_datasets
from storage.query.pages import PageQuery, encode_cursor, query_page

CURSOR_HEADER = "Relaylog-Next-Cursor"
MAX_EXTRA_COLUMNS = 8
MAX_ID_CHARS = 128
RATING_TEXT = {True: "▲", False: "▼", None: ""}


def _number(value: Any, unit: str = "") -> str:
    if value is None:
        return ""
    number = float(value)
    return f"{number:,.1f}{unit}" if 0 < number < 10 else f"{number:,.0f}{unit}"


def _cost(value: Any) -> str:
    """Dollars with two significant digits below a cent, e.g. $0.0000074; cents above."""
    if value is None:
        return ""
    cost = float(value)
    if cost == 0 or cost >= 0.01:
        return f"${cost:,.2f}"
    return f"${cost:.{1 - math.floor(math.log10(cost))}f}"


def _score(value: float) -> str:
    return f"{value:g}"


def _time(stamp: str) -> str:
    """'2026-12-02T18:21:04.123Z' as '12-02 18:21:04' (the full stamp is the cell's title)."""
    return f"{stamp[5:10]} {stamp[11:19]}" if len(stamp) >= 19 else stamp


def extra_columns(query: MultiMapping[str]) -> list[tuple[str, str]]:
    """The chosen property (`pcol`) and score (`scol`) columns of the URL, in order."""
    chosen: list[tuple[str, str]] = []
    for kind in ("pcol", "scol"):
        for name in query.getall(kind, []):
            name = name.strip()
            if name and (kind, name) not in chosen:
                chosen.append((kind, name))
    return chosen[:MAX_EXTRA_COLUMNS]


def row_view(row: Mapping[str, Any], extras: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A query row as the list's cells (strings; the template escapes them)."""
    scores: dict[str, float] = row["scores"]
    properties: dict[str, str] = row["properties"]
    extra = [
        properties.get(name.lower(), "")
        if kind == "pcol"
        else ("" if name not in scores else _score(scores[name]))
        for kind, name in extras
    ]
    return {
        "id": row["request_id"],
        "created_at": row["request_created_at"],
        "time": _time(row["request_created_at"]),
        "model": row["model"] or "",
        "status": "" if row["response_status"] is None else str(row["response_status"]),
        "outcome": row["outcome"],
        "latency": _number(row["delay_ms"], " ms"),
        "ttft": _number(row["time_to_first_token"], " ms"),
        "tokens": "" if row["total_tokens"] is None else f"{row['total_tokens']:,}",
        "cost": _cost(row["cost"]),
        "user": row["request_user_id"] or "",
        "session": row["session_id"] or "",
        "feedback": RATING_TEXT[row["feedback_rating"]],
        "feedback_title": {True: "rated up", False: "rated down", None: "not rated"}[
            row["feedback_rating"]
        ],
        "scores": ", ".join(f"{k} {_score(v)}" for k, v in scores.items()),
        "prompt": row.get("prompt_preview") or "",
        "answer": row.get("answer_preview") or "",
        "extra": extra,
    }


def curl_command(request: web.Request, tree: Any, limit: int) -> str:
    """The same rows as an API call: POST /v1/request/query with this filter tree."""
    body = orjson.dumps({"filter": tree, "limit": limit, "sort": {"created_at": "desc"}}).decode()
    auth = ' -H "Authorization: Bearer $RELAYLOG_KEY"' if request.app[POLICY].proxy.enabled else ""
    quoted = "'" + body.replace("'", "'\\''") + "'"
    return (
        f"curl -s {request.url.origin()}/v1/request/query{auth} "
        f"-H 'Content-Type: application/json' -d {quoted}"
    )


async def _page(request: web.Request, filt: UrlFilter, cursor: str | None) -> Any:
    size = request.app[SETTINGS].dashboard.page_size
    query = PageQuery(filter=filt.tree, limit=size, cursor=cursor)
    return await query_page(request.app[STORE], query)


async def list_context(request: web.Request) -> dict[str, Any]:
    """What requests.html shows: the filter bar, the first page of rows, the page state."""
    filt = url_filter(request.query)
    extras = extra_columns(request.query)
    page = await _page(request, filt, request.query.get("cursor") or None)
    settings = request.app[SETTINGS].dashboard
    return {
        **filter_bar(filt),
        "extras": extras,
        "rows": [row_view(row, extras) for row in page.rows],
        "next_cursor": page.next_cursor,
        "tree_json": orjson.dumps(filt.tree).decode(),
        "curl": curl_command(request, filt.tree, settings.page_size),
        "view_query": filt.with_params(extras),
        "tail_ms": int(settings.tail_interval_s * 1000),
        "datasets": await list_datasets(request.app[STORE]),
        "detail": None,
    }


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/requests")


async def page(request: web.Request) -> web.StreamResponse:
    """The requests list for the URL's filter."""
    return render(request, "requests.html", await list_context(request))


async def rows(request: web.Request) -> web.StreamResponse:
    """More rows for the page script: the next page (`cursor`) or those newer than
    (`after_time`, `after_id`), oldest first, for the live tail."""
    filt = url_filter(request.query)
    extras = extra_columns(request.query)
    after_time, after_id = request.query.get("after_time"), request.query.get("after_id")
    size = request.app[SETTINGS].dashboard.page_size
    if after_time and after_id:
        cursor = encode_cursor("created_at", "asc", after_time, after_id)
        query = PageQuery(filter=filt.tree, direction="asc", limit=size, cursor=cursor)
        found = await query_page(request.app[STORE], query)
    else:
        found = await _page(request, filt, request.query.get("cursor") or None)
    context = {
        "rows": [row_view(row, extras) for row in found.rows],
        "view_query": filt.with_params(extras),
    }
    response = render(request, "_rows.html", context)
    if found.next_cursor is not None:
        response.headers[CURSOR_HEADER] = found.next_cursor
    return response


async def count(request: web.Request) -> web.StreamResponse:
    """How many rows match, counted no further than dashboard.count_cap (then "N+")."""
    filt = url_filter(request.query)
    cap = request.app[SETTINGS].dashboard.count_cap
    found = await capped_count(request.app[STORE], filt.tree, cap)
    return web.json_response({"count": found.count, "capped": found.capped, "text": found.text})


def _request_id(request: web.Request) -> str:
    request_id = request.match_info["id"]
    if len(request_id) > MAX_ID_CHARS or "\x00" in request_id:
        raise QueryError("that is not a request id")
    return request_id


async def detail_context(request: web.Request) -> dict[str, Any]:
    """What detail.html shows: the whole record as a chat, facts, editors and raw JSON."""
    request_id = _request_id(request)
    record = await request.app[STORE].get_request(request_id)
    if record is None:
        raise web.HTTPNotFound(reason=f"no request with id {request_id!r} was logged")
    return {"record": record, "chat": conversation(record)}


async def detail_page(request: web.Request) -> web.StreamResponse:
    """A deep link to one request: the list for the URL's filter with the drawer open."""
    context = await list_context(request)
    context["detail"] = await detail_context(request)
    return render(request, "requests.html", context)


async def drawer(request: web.Request) -> web.StreamResponse:
    """The drawer alone, for the page script to swap in."""
    return render(request, "detail.html", {"detail": await detail_context(request)})
