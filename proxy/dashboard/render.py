"""render(): a dashboard template with the navigation and sign-in state; static file URLs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from proxy import __version__
from proxy.state import DASHBOARD_NAV, POLICY


@dataclass(frozen=True, slots=True)
class NavItem:
    """A page in the top navigation: its label, its URL and its route's name."""

    label: str
    url: str
    route: str


def static_url(name: str) -> str:
    """The URL of a file in static/, versioned so a new release is not served from a cache."""
    return f"/static/{name}?v={__version__}"


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
        {"nav": nav, "keys": request.app[POLICY].proxy.enabled, "version": __version__, **context},
        status=status,
    )
