"""The users page: each user's requests, tokens, cost, first and last seen and positive rate,
for the URL's filter, sorted by requests, cost or last seen, in keyset pages.

The numbers are storage.query.users.user_page's (rollup_users without a filter); each user
links to the requests list with the same filter and that user.
"""

from __future__ import annotations

from typing import Any, get_args
from urllib.parse import urlencode

from aiohttp import web

from proxy.dashboard.filters import UrlFilter, filter_bar, url_filter
from proxy.dashboard.formats import number, percent, usd
from proxy.dashboard.render import render, utc
from proxy.state import SETTINGS, STORE
from storage.errors import QueryError
from storage.query.filters import compile_filter
from storage.query.users import UserQuery, UserSort, user_page

SORT_LABELS: dict[str, str] = {"requests": "Requests", "cost": "Cost", "last_seen": "Last seen"}
SORTS: tuple[UserSort, ...] = get_args(UserSort)


def requests_link(filt: UrlFilter, name: str, value: str) -> str:
    """The requests list for this filter narrowed to `name=value` (replacing that parameter)."""
    params = [(k, v) for k, v in filt.params if k != name]
    return "/requests?" + urlencode([*params, (name, value)])


def _sort(text: str) -> UserSort:
    for sort in SORTS:
        if sort == text:
            return sort
    raise QueryError(f"cannot sort users by {text!r}; use {', '.join(SORTS)}")


def user_view(filt: UrlFilter, user: dict[str, Any]) -> dict[str, Any]:
    """A user_page row as the table's cells (strings; the template escapes them)."""
    rate = user["positive_rate"]
    return {
        "id": user["user_id"],
        "href": requests_link(filt, "user", user["user_id"]),
        "requests": number(user["requests"]),
        "tokens": number(user["total_tokens"]),
        "cost": usd(user["cost_usd"]),
        "first": utc(user["first_at"]),
        "last": utc(user["last_at"]),
        "positive": "" if rate is None else percent(rate),
        "rated": f"{user['positive']:,} up of {user['rated']:,} rated"
        if user["rated"]
        else "not rated",
    }


async def page(request: web.Request) -> web.StreamResponse:
    """One page of users for the URL's filter and sort (`sort`, `cursor`)."""
    filt = url_filter(request.query)
    sort = _sort(request.query.get("sort") or "requests")
    size = request.app[SETTINGS].dashboard.page_size
    query = UserQuery(sort, size, request.query.get("cursor") or None)
    found = await user_page(request.app[STORE], compile_filter(filt.tree), query)
    sorts = [
        (name, label, "/users?" + filt.with_params([("sort", name)]))
        for name, label in SORT_LABELS.items()
    ]
    more = None
    if found.next_cursor is not None:
        more = "/users?" + filt.with_params([("sort", sort), ("cursor", found.next_cursor)])
    return render(
        request,
        "users.html",
        {
            **filter_bar(filt),
            "users": [user_view(filt, user) for user in found.rows],
            "sort": sort,
            "sorts": sorts,
            "more": more,
            "first_page": query.cursor is None,
        },
    )
