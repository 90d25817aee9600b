"""The dashboard's route table and page_handler(): keys, read-your-writes, time limit, headers.

The time limit (`dashboard.query_timeout_s`) is a read deadline the store honours: a statement
still running when it passes is stopped, so a slow view frees the store for the next reader.

PAGES lists every dashboard route once, in the order of the top navigation. mount_pages()
registers them (before the API's routes cannot clash: none is under /v1) and the static files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from proxy.dashboard import analytics, auth, datasets, operations, requests, sessions, users
from proxy.dashboard.filters import filter_bar, unparsed
from proxy.dashboard.render import NavItem, render, signed_in
from proxy.envelopes import envelope_error
from proxy.errors import ApiError
from proxy.state import DASHBOARD_NAV, RECORDER, SETTINGS
from storage.base import read_deadline
from storage.errors import DatasetExists, QueryError, QueryTimeout, StoreError, UnknownDataset

log = logging.getLogger("relaylog.dashboard")

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PREFIX = "dashboard."
STATIC_ROUTE = PREFIX + "static"
# No inline script or style anywhere: every script and stylesheet is a file under /static/.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
TIMEOUT_MESSAGE = (
    "This view took longer than {seconds:g} s to read: narrow the time range "
    "(or the filter) and try again."
)


@dataclass(frozen=True, slots=True)
class Page:
    """One dashboard route: path, handler, route name, and its label in the navigation."""

    path: str
    handler: PageHandler
    name: str
    nav: str | None = None
    method: str = "GET"
    # What the page script fetches (rows, counts): errors come back as short text.
    part: bool = False
    # Open pages (the login form) answer without a signed-in key.
    open: bool = False


PAGES: tuple[Page, ...] = (
    Page("/", requests.home, "home"),
    Page("/requests", requests.page, "requests", nav="Requests"),
    Page("/requests/rows", requests.rows, "request_rows", part=True),
    Page("/requests/count", requests.count, "request_count", part=True),
    Page("/requests/{id:[^/]+}", requests.detail_page, "request_detail"),
    Page("/requests/{id:[^/]+}/drawer", requests.drawer, "request_drawer", part=True),
    Page("/analytics", analytics.page, "analytics", nav="Analytics"),
    Page("/operations", operations.page, "operations", nav="Operations"),
    Page("/operations/values", operations.values, "operation_values", part=True),
    Page("/sessions", sessions.page, "sessions", nav="Sessions"),
    Page("/sessions/{id:[^/]+}", sessions.detail, "session_detail"),
    Page("/users", users.page, "users", nav="Users"),
    Page("/datasets", datasets.page, "datasets", nav="Datasets"),
    Page("/login", auth.login_form, "login", open=True),
    Page("/login", auth.login, "login_post", method="POST", open=True),
    Page("/logout", auth.logout, "logout", method="POST", open=True),
)


def _problem(request: web.Request, part: bool, status: int, message: str) -> web.Response:
    """The page's error: a short text for the page script; otherwise the message above the
    filter bar (when the URL has a filter) so the filter can be fixed or narrowed in place."""
    if part:
        return web.Response(status=status, text=message)
    filt = unparsed(request.query)
    context: dict[str, Any] = {"status": status, "message": message, "path": request.path}
    if filt.params or status in (400, 503):
        context.update(filter_bar(filt))
    return render(request, "error.html", context, status=status)


async def _answer(page: Page, request: web.Request) -> web.StreamResponse:
    if not page.open and not signed_in(request):
        if page.part:
            return web.Response(status=401, text="sign in with a proxy key first")
        raise web.HTTPSeeOther(auth.login_url(request))
    settings = request.app[SETTINGS]
    if not page.open:
        # Read your writes, as the API's reads: every exchange answered before this request.
        await request.app[RECORDER].caught_up(settings.feedback.wait_ms / 1000)
    seconds = settings.dashboard.query_timeout_s
    try:
        # The store stops a statement at the deadline; the page as a whole ends there too.
        with read_deadline(seconds):
            async with asyncio.timeout(seconds):
                return await page.handler(request)
    except (QueryTimeout, TimeoutError):
        log.info("%s stopped at the dashboard's time limit (%g s)", request.path, seconds)
        return _problem(request, page.part, 503, TIMEOUT_MESSAGE.format(seconds=seconds))
    except UnknownDataset as exc:
        return _problem(request, page.part, 404, str(exc))
    except (QueryError, DatasetExists) as exc:
        return _problem(request, page.part, 400, str(exc))
    except StoreError as exc:
        log.warning("dashboard read failed: %s", exc)
        return _problem(request, page.part, 503, f"the store is unavailable: {exc}")


def page_handler(page: Page) -> PageHandler:
    """The aiohttp handler for `page`: sign-in, read-your-writes, time limit, headers."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await _answer(page, request)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _problem(request, page.part, exc.status, exc.reason)
            exc.headers.update(SECURITY_HEADERS)
            raise
        response.headers.update(SECURITY_HEADERS)
        return response

    wrapped.__name__ = wrapped.__qualname__ = page.name
    return wrapped


class SecureStatic(web.StaticResource):
    """The static files, with the pages' security headers on every answer (errors too).

    A resource of its own rather than an on_response_prepare hook, which would run on every
    response of every route (each forwarded call) to find the few that are static files.
    """

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await super()._handle(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                exc.headers.update(SECURITY_HEADERS)
                raise
            # The error in the API's envelope, as the error middleware would answer it.
            response = envelope_error(ApiError(exc.status, exc.reason))
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_pages(app: web.Application, pages: Sequence[Page], static: Path) -> None:
    """Register `pages` and the static files; call before the forward catch-all."""
    app[DASHBOARD_NAV] = tuple(
        NavItem(page.nav, page.path, PREFIX + page.name) for page in pages if page.nav is not None
    )
    for page in pages:
        app.router.add_route(page.method, page.path, page_handler(page), name=PREFIX + page.name)
    app.router.register_resource(SecureStatic("/static", static, name=STATIC_ROUTE))
