"""The operations page for the URL's filter and time range: requests by outcome, latency and
TTFT percentiles, tokens and cost per hour or day, and the top models, users and property
values, each a link into the requests list with that value added to the filter.

The figures are storage.query.operations' (the rollups when the filter is a time range,
models and outcomes; the matching rows otherwise); the top users come from rollup_users
without a filter, and from the matching rows with one. The top property values, the slowest
to count over a long range, are a part the page script fetches (static/operations.js), so a
slow count says "narrow the time range" in its box while the charts are shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from markupsafe import Markup

from proxy.dashboard.charts import (
    OUTCOME_COLORS,
    Series,
    column_chart,
    empty,
    line_chart,
    meter,
)
from proxy.dashboard.filters import CUSTOM, UrlFilter, filter_bar, url_filter
from proxy.dashboard.formats import ms, number, optional, percent, usd
from proxy.dashboard.render import render
from proxy.dashboard.series import axis, bucket_label
from proxy.state import STORE
from storage.errors import QueryError
from storage.query.analytics import distinct_keys
from storage.query.filters import compile_filter
from storage.query.operations import (
    UNITS,
    Scope,
    Unit,
    operations,
    top_property_values,
    top_users,
)
from storage.query.selection import moment

MAX_KEY_CHARS = 256
# With no bucket chosen: days, or hours when the periods span at most this many days.
HOURLY_DAYS = 3
# The filter parameters the rollups answer; any other one reads the matching rows.
ROLLUP_PARAMS = frozenset({"since", "until", "from", "to", "model", "outcome"})
NO_TTFT = "No time to first token here: only streamed calls have one."
LATENCY_LINES = (("p50", "#3fa66b"), ("p90", "#e8843a"), ("p99", "#d64f62"))


def rollup_scope(filt: UrlFilter, now: float) -> Scope | None:
    """The filter as a Scope when it is only a time range, models and outcomes; else None.

    Times are resolved as url_filter resolves them, with the same `now`.
    """
    if any(name not in ROLLUP_PARAMS for name, _ in filt.params):
        return None
    since, until = filt.value("since") or None, filt.value("until") or None
    if since == CUSTOM:
        since, until = filt.value("from") or None, filt.value("to") or None
    return Scope(
        since=None if since is None else moment(since, "since", now),
        until=None if until is None else moment(until, "until", now),
        models=tuple(filt.values("model")),
        outcomes=tuple(filt.values("outcome")),
    )


def first_unit(scope: Scope | None, now: float) -> Unit:
    """Hours for a range that starts at most HOURLY_DAYS before its end; days otherwise (and
    for a range with no start, until the days read say there are few of them)."""
    if scope is None or scope.since is None:
        return "day"
    end = now if scope.until is None else _seconds(scope.until)
    return "hour" if end - _seconds(scope.since) <= HOURLY_DAYS * 86400 else "day"


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _days(found: dict[str, Any]) -> list[str]:
    return [period["period"] for period in found["periods"]]


def narrowed(filt: UrlFilter, name: str, value: str) -> str:
    """The requests list for this filter and `name=value`: a model or user replaces the
    filter's own (they mean any of), a property is added (they mean all of)."""
    params = [(k, v) for k, v in filt.params if k != name or name == "property"]
    return "/requests?" + urlencode([*params, (name, value)])


def _unit(query: Any) -> Unit | None:
    value = query.get("bucket", "").strip()
    for unit in UNITS:
        if unit == value:
            return unit
    if value:
        raise QueryError(f"bucket must be {' or '.join(UNITS)}, not {value[:40]!r}")
    return None


def _property_key(query: Any) -> str | None:
    """The URL's property key for the top values (`prop`); None for the store's first."""
    key = query.get("prop", "").strip().lower()
    if len(key) > MAX_KEY_CHARS:
        raise QueryError(f"a property key has at most {MAX_KEY_CHARS} characters")
    return key or None


def charts(found: dict[str, Any]) -> list[Markup]:
    """The page's charts over a gap-free axis of the periods."""
    unit = found["unit"]
    periods = {p["period"]: p for p in found["periods"]}
    categories = axis(unit, periods)
    x_label = bucket_label(unit)
    per = f"per {unit}"

    def values(read: Any) -> list[float | None]:
        return [None if c not in periods else read(periods[c]) for c in categories]

    outcomes = list(found["totals"]["outcomes"])
    by_outcome = [
        Series(
            o, values(lambda p, o=o: float(p["outcomes"].get(o, 0))), color=OUTCOME_COLORS.get(o)
        )
        for o in outcomes
    ]

    def lines(metric: str) -> list[Series]:
        return [
            Series(name, values(lambda p, name=name: p[metric][name]), color=color)
            for name, color in LATENCY_LINES
        ]

    tokens = [
        Series(part, values(lambda p, part=part: float(p["tokens"][part])))
        for part in ("prompt", "completion")
    ]
    cost = [Series("cost", values(lambda p: p["cost_usd"]))]
    return [
        column_chart(f"Requests by outcome {per}", categories, by_outcome, number, x_label=x_label),
        line_chart(f"Latency {per}", categories, lines("latency_ms"), ms, x_label=x_label),
        line_chart(f"Time to first token {per}", categories, lines("ttft_ms"), ms, x_label=x_label)
        if found["totals"]["ttft_ms"]["p50"] is not None
        else empty(f"Time to first token {per}", NO_TTFT),
        column_chart(f"Tokens {per}", categories, tokens, number, x_label=x_label),
        column_chart(f"Cost {per}", categories, cost, usd, x_label=x_label),
    ]


def headline(totals: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(id, label, value) of the figures over the whole range."""
    requests, errors = totals["requests"], totals["errors"]
    latency, ttft = totals["latency_ms"], totals["ttft_ms"]
    show_ms = optional(ms)
    return [
        ("requests", "Requests", number(requests)),
        (
            "errors",
            "Errors",
            number(errors) + (f" ({percent(errors / requests)})" if requests else ""),
        ),
        ("p50", "Latency p50", show_ms(latency["p50"])),
        ("p99", "Latency p99", show_ms(latency["p99"])),
        ("ttft", "TTFT p50", show_ms(ttft["p50"])),
        ("tokens", "Tokens", number(totals["tokens"]["total"])),
        ("cost", "Cost", usd(totals["cost_usd"])),
    ]


def top_list(found: list[dict[str, Any]], link: Callable[[str], str]) -> list[dict[str, Any]]:
    """Top values with a bar of their share of the largest and a link into the list."""
    most = max((row["requests"] for row in found), default=0)
    return [
        {
            "value": str(row["value"]),
            "requests": number(row["requests"]),
            "href": link(str(row["value"])),
            "meter": meter(row["requests"], most, f"{row['requests']:,} requests"),
        }
        for row in found
    ]


async def operations_context(request: web.Request) -> dict[str, Any]:
    """What operations.html shows for the URL's filter, bucket (`hour`/`day`) and `prop`."""
    now = time.time()
    filt = url_filter(request.query, now)
    condition = compile_filter(filt.tree)
    scope = rollup_scope(filt, now)
    chosen = _unit(request.query)
    store = request.app[STORE]
    found = await operations(store, condition, chosen or first_unit(scope, now), scope)
    if chosen is None and found["unit"] == "day" and len(axis("day", _days(found))) <= HOURLY_DAYS:
        found = await operations(store, condition, "hour", scope)
    users = await top_users(store, condition)
    keys = await distinct_keys(store, "properties")
    key = _property_key(request.query) or (keys[0] if keys else None)
    values_query = filt.with_params([("prop", key)] if key else [])
    return {
        **filter_bar(filt),
        "bucket": chosen or "",
        "unit": found["unit"],
        "figures": headline(found["totals"]),
        "charts": charts(found) if found["periods"] else [],
        "models": top_list(found["models"], lambda v: narrowed(filt, "model", v)),
        "users": top_list(users, lambda v: narrowed(filt, "user", v)),
        "prop": key or "",
        "prop_keys": keys if key is None or key in keys else [*keys, key],
        "values_url": "/operations/values?" + values_query,
        "rollups": scope is not None,
    }


async def page(request: web.Request) -> web.StreamResponse:
    """The operations page for the URL's filter; the property values come apart (`values`)."""
    return render(request, "operations.html", await operations_context(request))


async def values(request: web.Request) -> web.StreamResponse:
    """The top values of the property `prop` (the store's first key when absent) for the URL's
    filter, for the page script: apart from the page because over a few days of a large store
    they take longest to count, and the charts need not wait (nor fail) for them."""
    filt = url_filter(request.query)
    condition = compile_filter(filt.tree)
    store = request.app[STORE]
    key = _property_key(request.query)
    if key is None:
        keys = await distinct_keys(store, "properties")
        key = keys[0] if keys else None
    found = [] if key is None else await top_property_values(store, condition, key)
    rows = top_list(found, lambda v: narrowed(filt, "property", f"{key}={v}"))
    return render(request, "_top_values.html", {"prop": key or "", "values": rows})
