"""The web dashboard at `/`: server-rendered pages over storage/query, the project's own JS and CSS.

How a view is added (the conventions every page follows):

- A module per view (`requests.py`, `datasets.py`, ...) with handlers `async def x(request) ->
  web.StreamResponse` that read through `storage/query/` only (never SQL here; the JSON API
  calls the same functions, so the two cannot disagree) and answer with
  `render(request, "x.html", {...})` from `proxy.dashboard.render`.
- One row per route in `routes.PAGES` (like proxy/api's ROUTES). `nav=` puts the page in the
  top navigation, in table order. `part=True` marks what the page script fetches (rows, counts):
  its errors are short texts with a status, not a whole page.
- `routes.page_handler` wraps every handler: the key check (a page without a signed-in cookie
  redirects to /login), read-your-writes (waits for queued rows like the API's reads), the time
  limit `dashboard.query_timeout_s` (a slow read shows "narrow the time range" with a 503,
  never a 500), storage's errors as 400/404/503 pages, and the security headers (CSP without
  inline script or style, nosniff, frame-ancestors 'none').
- The filter of the URL: `filters.url_filter(request.query)` gives the filter tree and the canonical
  query string (for links), the same for every view; `filters.filter_bar(filt)` is what the
  shared `_filters.html` needs (include it in a GET form with id `filter-form`, and add
  `static/filters.js` for its script). An error page keeps the filter bar to fix the filter.
- Templates extend `base.html` (blocks `title`, `content`, `scripts`) and are autoescaped: every
  logged string is text. No inline `<script>` or `style=` (the CSP refuses them): a view's script
  is `static/<view>.js`, added in its `scripts` block with `static_url`; colours come from the
  CSS variables of `static/style.css` (`--bg`, `--fg`, `--muted`, `--line`, `--accent`, `--good`,
  `--bad`, `--warn`, `--panel`), which switch with the light/dark theme.
- Page scripts never build markup from data: they set `textContent`, or swap in an element the
  server rendered (parsed with DOMParser). Writes go to the JSON API (`fetch` with
  `Content-Type: application/json`), which takes the dashboard's cookie only from the same origin.
- Browser tests use `tests/browser.py`: relaylog on the sandbox with seeded traffic, a page, and
  screenshots into docs/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from proxy.dashboard.render import static_url, utc
from proxy.dashboard.routes import PAGES, mount_pages

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"


def setup_dashboard(app: web.Application) -> None:
    """Templates (autoescaped), the static files and every dashboard route, on `app`."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.filters["utc"] = utc
    mount_pages(app, PAGES, STATIC)
