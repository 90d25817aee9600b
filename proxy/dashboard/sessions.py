"""The sessions list (latest activity first, keyset pages, search by name or id) and one
session as a tree of its Helicone-Session-Path values with a timeline of its requests.

The numbers are storage.query.sessions' (rollup_sessions without a filter). Rating a session
posts to POST /v1/session/{id}/feedback from static/sessions.js, as the API's callers do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from proxy.dashboard.charts import OUTCOME_COLORS, PALETTE
from proxy.dashboard.filters import filter_bar, url_filter
from proxy.dashboard.formats import ms, number, usd
from proxy.dashboard.ranges import Span, timeline
from proxy.dashboard.render import render, utc
from proxy.state import SETTINGS, STORE
from storage.errors import QueryError
from storage.query.filters import compile_filter
from storage.query.sessions import MAX_SEARCH, SessionQuery, session_detail, session_page

MAX_ID_CHARS = 256
MAX_DEPTH = 8
MAX_SPANS = 200
NO_PATH = "(no path)"
RATING_TEXT = {True: "▲", False: "▼", None: ""}
RATING_TITLE = {True: "rated up", False: "rated down", None: "not rated"}


def session_url(session_id: str) -> str:
    return "/sessions/" + quote(session_id, safe="")


def drawer_url(request_id: str, session_id: str) -> str:
    """The request's drawer over the requests list of its session."""
    return f"/requests/{quote(request_id, safe='')}?" + urlencode({"session": session_id})


def session_view(session: dict[str, Any]) -> dict[str, Any]:
    """A session_page row as the table's cells (strings; the template escapes them)."""
    return {
        "id": session["session_id"],
        "href": session_url(session["session_id"]),
        "name": session["name"] or "",
        "first": utc(session["first_at"]),
        "last": utc(session["last_at"]),
        "requests": number(session["requests"]),
        "tokens": number(session["total_tokens"]),
        "cost": usd(session["cost_usd"]),
        "rating": RATING_TEXT[session["rating"]],
        "rating_title": RATING_TITLE[session["rating"]],
    }


async def page(request: web.Request) -> web.StreamResponse:
    """One page of sessions for the URL's filter and `search` text."""
    filt = url_filter(request.query)
    search = request.query.get("search", "").strip()
    size = request.app[SETTINGS].dashboard.page_size
    query = SessionQuery(search or None, size, request.query.get("cursor") or None)
    found = await session_page(request.app[STORE], compile_filter(filt.tree), query)
    state = [("search", search)] if search else []
    more = None
    if found.next_cursor is not None:
        more = "/sessions?" + filt.with_params([*state, ("cursor", found.next_cursor)])
    return render(
        request,
        "sessions.html",
        {
            **filter_bar(filt),
            "search": search,
            "max_search": MAX_SEARCH,
            "sessions": [session_view(s) for s in found.rows],
            "more": more,
            "first_page": None if query.cursor is None else "/sessions?" + filt.with_params(state),
        },
    )


@dataclass(slots=True)
class Node:
    """A segment of Helicone-Session-Path: the requests logged at it, and the segments below."""

    name: str
    path: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    children: dict[str, Node] = field(default_factory=dict)


def session_tree(rows: Sequence[dict[str, Any]]) -> Node:
    """The paths of `rows` as a tree; children in the order their first request came."""
    root = Node("", "/")
    for row in rows:
        node = root
        parts = [part for part in (row["session_path"] or "").split("/") if part]
        for i, part in enumerate(parts):
            node = node.children.setdefault(part, Node(part, "/" + "/".join(parts[: i + 1])))
        node.rows.append(row)
    return root


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def tree_entries(root: Node, session_id: str, start: datetime) -> list[dict[str, Any]]:
    """The tree depth first as lines: a path segment with its requests, each request with
    its model, time and numbers, its offset from `start` and a link to its drawer. Requests
    without a path come first."""
    entries: list[dict[str, Any]] = []

    def request_line(node: Node, row: dict[str, Any], depth: int) -> dict[str, Any]:
        latency = row["latency_ms"]
        return {
            "kind": "request",
            "depth": min(depth, MAX_DEPTH),
            "label": node.name or NO_PATH,
            "path": node.path if node.name else "",
            "id": row["id"],
            "href": drawer_url(row["id"], session_id),
            "time": utc(row["created_at"]),
            "offset_ms": (_when(row["created_at"]) - start).total_seconds() * 1000,
            "latency_ms": latency,
            "model": row["model"] or "",
            "outcome": row["outcome"],
            "latency": "" if latency is None else ms(latency),
            "tokens": "" if row["total_tokens"] is None else number(row["total_tokens"]),
            "cost": "" if row["cost_usd"] is None else usd(row["cost_usd"]),
            "user": row["user_id"] or "",
            "prompt": row["prompt_preview"] or "",
        }

    def walk(node: Node, depth: int) -> None:
        if node.name and not node.rows:
            entries.append({"kind": "node", "depth": min(depth, MAX_DEPTH), "label": node.name,
                            "path": node.path})  # fmt: skip
        entries.extend(request_line(node, row, depth) for row in node.rows)
        for child in node.children.values():
            walk(child, depth + 1 if node.name else depth)

    walk(root, 0)
    return entries


def spans(entries: Sequence[dict[str, Any]]) -> list[Span]:
    """The request lines as timeline bars: from the session's first request, as long as
    each took, coloured by outcome."""
    out = []
    for entry in entries:
        if entry["kind"] != "request":
            continue
        tooltip = " · ".join(
            part
            for part in (entry["path"] or NO_PATH, entry["model"], entry["latency"],
                         entry["outcome"], entry["time"])
            if part
        )  # fmt: skip
        out.append(
            Span(
                label=entry["label"],
                start_ms=entry["offset_ms"],
                duration_ms=entry["latency_ms"] or 0.0,
                tooltip=tooltip,
                depth=entry["depth"],
                href=entry["href"],
                color=OUTCOME_COLORS.get(entry["outcome"], PALETTE[0]),
            )
        )
    return out[:MAX_SPANS]


def _session_id(request: web.Request) -> str:
    session_id = request.match_info["id"]
    if len(session_id) > MAX_ID_CHARS or "\x00" in session_id:
        raise QueryError("that is not a session id")
    return session_id


async def detail(request: web.Request) -> web.StreamResponse:
    """One session: totals, its rating (with the buttons to change it), tree and timeline."""
    session_id = _session_id(request)
    found = await session_detail(request.app[STORE], session_id)
    if found is None:
        raise web.HTTPNotFound(reason=f"no request of session {session_id!r} was logged")
    rows = found["rows"]
    start = _when(rows[0]["created_at"]) if rows else datetime.now(UTC)
    entries = tree_entries(session_tree(rows), session_id, start)
    bars = spans(entries)
    shown = sum(entry["kind"] == "request" for entry in entries)
    return render(
        request,
        "session.html",
        {
            "session": session_view(found),
            "rating": found["rating"],
            "rated_at": utc(found["rated_at"]),
            "entries": entries,
            "timeline": timeline("Requests over the session", bars),
            "timeline_cut": len(bars) < shown,
            "max_spans": MAX_SPANS,
            "truncated": found["truncated"],
            "shown": shown,
            "requests_url": "/requests?" + urlencode({"session": session_id}),
        },
    )
