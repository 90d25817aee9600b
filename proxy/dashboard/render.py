"""render(): a dashboard template with the navigation and sign-in state; static file URLs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from proxy import __version__
from proxy.auth import KEY_COOKIE
from proxy.state import DASHBOARD_NAV, POLICY


@dataclass(frozen=True, slots=True)
class NavItem:
    """A page in the top navigation: its label, its URL and its route's name."""

    label: str
    url: str
    route: str


def utc(stamp: str | None) -> str:
    """A stored timestamp ('2026-12-02T18:21:04.123Z') as '2026-12-02 18:21:04' (UTC)."""
    if not stamp:
        return ""
    return f"{stamp[:10]} {stamp[11:19]}" if len(stamp) >= 19 else stamp


def static_url(name: str) -> str:
    """The URL of a file in static/, versioned so a new release is not served from a cache."""
    return f"/static/{name}?v={__version__}"


def signed_in(request: web.Request) -> bool:
    """True when no keys are configured, or the request carries a proxy key."""
    ring = request.app[POLICY].proxy
    if not ring.enabled:
        return True
    cookie = request.cookies.get(KEY_COOKIE)
    if cookie:
        return ring.matches(cookie)
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and ring.matches(token.strip())


def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    """`template` rendered with `context`, the navigation and whether keys are configured."""
    current = request.match_info.route.name
    nav = [
        {"label": item.label, "url": item.url, "active": item.route == current}
        for item in request.app[DASHBOARD_NAV]
    ]
    return aiohttp_jinja2.render_template(
        template,
        request,
        {
            "nav": nav if signed_in(request) else [],
            "keys": request.app[POLICY].proxy.enabled,
            "signed_in": signed_in(request),
            "version": __version__,
            **context,
        },
        status=status,
    )
