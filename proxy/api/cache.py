"""GET /v1/cache (entries and bytes held) and DELETE /v1/cache (purge, optionally filtered)."""

from __future__ import annotations

import math
import time

from aiohttp import web
from multidict import MultiMapping

from proxy.envelopes import envelope
from proxy.errors import ApiError
from proxy.state import STORE
from storage.cache import CacheFilter

TEXT_FILTERS = ("model", "path", "seed")
MAX_FILTER_CHARS = 1024


def purge_filter(query: MultiMapping[str], now: float) -> CacheFilter:
    """The entries a purge removes: `model`, `path`, `seed`, `older_than_s`; 400 on others."""
    unknown = sorted(set(query) - {*TEXT_FILTERS, "older_than_s"})
    if unknown:
        raise ApiError(
            400, f"unknown filter {unknown[0][:40]!r}; use {', '.join(TEXT_FILTERS)}, older_than_s"
        )
    values: dict[str, str] = {}
    for name in TEXT_FILTERS:
        items = query.getall(name, [])
        if len(items) > 1:
            raise ApiError(400, f"{name} given more than once")
        if items:
            if len(items[0]) > MAX_FILTER_CHARS:
                raise ApiError(400, f"{name} is longer than {MAX_FILTER_CHARS} characters")
            values[name] = items[0]
    before = None
    raw_age = query.get("older_than_s")
    if raw_age is not None:
        try:
            age = float(raw_age)
        except ValueError:
            age = math.nan
        if not 0 <= age <= 10 * 365 * 86400:
            raise ApiError(400, "older_than_s must be a number of seconds from 0 to 10 years")
        before = now - age
    return CacheFilter(
        model=values.get("model"), path=values.get("path"), seed=values.get("seed"), before=before
    )


async def cache_stats(request: web.Request) -> web.Response:
    return envelope(await request.app[STORE].cache_stats())


async def cache_purge(request: web.Request) -> web.Response:
    where = purge_filter(request.query, time.time())
    return envelope({"deleted": await request.app[STORE].cache_clear(where)})
