"""POST /v1/request/query and /v1/request/stats: pages and aggregates over the filter tree."""

from __future__ import annotations

from aiohttp import web

from proxy.api.models import CountBody, QueryBody, StatsBody
from proxy.envelopes import envelope
from proxy.state import STORE
from storage.query.filters import compile_filter
from storage.query.pages import query_page
from storage.query.stats import count_requests, request_stats

CURSOR_HEADER = "Relaylog-Next-Cursor"


async def request_query(request: web.Request, body: QueryBody) -> web.StreamResponse:
    """A page of matching rows in Helicone's shape; the next page's cursor in a header."""
    page = await query_page(request.app[STORE], body.page())
    response = envelope(page.rows)
    if page.next_cursor is not None:
        response.headers[CURSOR_HEADER] = page.next_cursor
    return response


async def request_count(request: web.Request, body: CountBody) -> web.StreamResponse:
    """Helicone's count: the number of logged requests matching the filter tree."""
    return envelope(await count_requests(request.app[STORE], compile_filter(body.filter)))


async def stats(request: web.Request, body: StatsBody) -> web.StreamResponse:
    """Totals and latency percentiles over the matching rows, optionally grouped."""
    condition = compile_filter(body.filter)
    return envelope(await request_stats(request.app[STORE], condition, body.group_by))
