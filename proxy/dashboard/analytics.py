"""The feedback analytics page: positive rate and ratings over time, split by model, user or a
property; score distributions; the latest negative feedback, each a link into the drawer.

The headline figures are request_stats' (what POST /v1/request/stats answers for the same
filter); the charts read the rated rows alone (storage.query.analytics.rated_split), so a split
by a user or a property with thousands of values still answers a few series: the most rated
values, "(none)" for rows without one, and "other" for the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web
from markupsafe import Markup
from multidict import MultiMapping

from proxy.dashboard.charts import Series, column_chart, line_chart
from proxy.dashboard.comparison import compare_state, comparison_context
from proxy.dashboard.filters import UrlFilter, filter_bar, url_filter
from proxy.dashboard.formats import number, percent, whole_percent
from proxy.dashboard.render import render
from proxy.dashboard.series import (
    OTHER,
    TOP_SERIES,
    Cell,
    axis,
    bucket_label,
    label,
    positive_rate,
    rated_note,
    series,
)
from proxy.dashboard.splits import split_choices, split_label, split_of
from proxy.state import STORE
from storage import Store
from storage.errors import QueryError
from storage.query.analytics import (
    BUCKETS,
    distinct_keys,
    rated_split,
    recent_negatives,
    score_distributions,
    split_by_unit,
)
from storage.query.compare import wilson
from storage.query.filters import Condition, compile_filter
from storage.query.stats import request_stats

# With no bucket chosen: days, or hours when the rated rows span at most this many days.
HOURLY_DAYS = 2
NEGATIVES = 10
# The page's own parameters beside the filter bar's.
VIEW_PARAMS = ("split", "bucket")


def bucket_of(query: MultiMapping[str]) -> str | None:
    """The URL's time bucket, hour or day; None to choose it from the rated rows' span."""
    value = query.get("bucket", "").strip()
    if value and value not in BUCKETS:
        raise QueryError(f"bucket must be {' or '.join(BUCKETS)}, not {value[:40]!r}")
    return value or None


def view_params(query: MultiMapping[str]) -> list[tuple[str, str]]:
    """The page's own state in the URL (split, bucket), for the other forms to carry along."""
    return [(name, query[name].strip()) for name in VIEW_PARAMS if query.get(name, "").strip()]


def _series_name(group: dict[str, Any], split: str | None) -> str:
    if split is None:
        return "all"
    return OTHER if group["rest"] else label(group["key"][split])


def over_time(
    groups: Sequence[dict[str, Any]], unit: str, split: str | None
) -> tuple[list[str], list[Series], list[Series]]:
    """The axis, the positive-rate lines and the rated-count columns of rated_split's groups.

    Series in order of ratings, "other" (the values beyond the top ones) last.
    """
    categories = axis(unit, (g["key"][unit] for g in groups))
    cells: dict[tuple[str, str], Cell] = {}
    weights: dict[str, int] = {}
    for group in groups:
        name = _series_name(group, split)
        cells.setdefault((group["key"][unit], name), Cell([])).groups.append(group)
        weights[name] = weights.get(name, 0) + group["feedback"]["count"]
    names = sorted(weights, key=lambda n: (n == OTHER and split is not None, -weights[n], n))
    rates = series(categories, names, cells, positive_rate, rated_note)
    counts = series(categories, names, cells, lambda c: c.total(lambda g: g["feedback"]["count"]))
    return categories, rates, counts


def by_day(groups: Sequence[dict[str, Any]], split: str | None) -> list[dict[str, Any]]:
    """rated_split's hourly groups added up per day: its daily groups (the top values are
    ranked over the whole range either way)."""
    days: dict[tuple[Any, ...], dict[str, Any]] = {}
    for group in groups:
        value = None if split is None else group["key"][split]
        day = group["key"]["hour"][:10]
        found = days.get((day, value, group["rest"]))
        if found is None:
            key = {"day": day} if split is None else {"day": day, split: value}
            found = days[(day, value, group["rest"])] = {
                "key": key,
                "feedback": {"count": 0, "positive": 0},
                "rest": group["rest"],
            }
        found["feedback"]["count"] += group["feedback"]["count"]
        found["feedback"]["positive"] += group["feedback"]["positive"]
    return list(days.values())


async def ratings_over_time(
    store: Store, condition: Condition, bucket: str | None, split: str | None
) -> tuple[str, list[dict[str, Any]]]:
    """The chosen (or chosen for it) time unit and rated_split's groups by it. Without a
    chosen unit: days, or hours when the days span at most HOURLY_DAYS. When the rollups or
    the rated property rows answer (split_by_unit), a second query by hour costs little; when
    the rated rows are read, they are read once, by hour, and added up by day unless they
    span at most HOURLY_DAYS days."""
    if bucket is not None:
        return bucket, await rated_split(store, condition, bucket, split, TOP_SERIES)
    if await split_by_unit(store, condition, split):
        groups = await rated_split(store, condition, "day", split, TOP_SERIES)
        if len(axis("day", (g["key"]["day"] for g in groups))) > HOURLY_DAYS:
            return "day", groups
        return "hour", await rated_split(store, condition, "hour", split, TOP_SERIES)
    groups = await rated_split(store, condition, "hour", split, TOP_SERIES)
    if len(axis("day", (g["key"]["hour"][:10] for g in groups))) <= HOURLY_DAYS:
        return "hour", groups
    return "day", by_day(groups, split)


def score_charts(distributions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each score name's figures and its histogram."""
    return [
        {
            **found,
            "avg_text": number(found["avg"]),
            "range_text": f"{number(found['min'])} to {number(found['max'])}",
            "chart": column_chart(
                f"{found['name']}: {found['count']:,} scored",
                [b["label"] for b in found["bins"]],
                [Series("requests", [float(b["count"]) for b in found["bins"]])],
            ),
        }
        for found in distributions
    ]


def negative_rows(found: Sequence[dict[str, Any]], filt: UrlFilter) -> list[dict[str, Any]]:
    """The latest negatives with a link that opens each in the request drawer."""
    suffix = f"?{filt.query}" if filt.query else ""
    return [{**row, "href": f"/requests/{quote(str(row['id']), safe='')}{suffix}"} for row in found]


def headline(stats: dict[str, Any]) -> dict[str, Any]:
    """request_stats' totals as the page's figures, with the positive rate's 95% interval."""
    feedback = stats["feedback"]
    rate = feedback["positive_rate"]
    interval = None
    if feedback["count"]:
        low, high = wilson(feedback["positive"], feedback["count"])
        interval = f"95% CI {percent(low)} to {percent(high)}"
    return {
        "requests": stats["requests"],
        "rated": feedback["count"],
        "positive": feedback["positive"],
        "negative": feedback["negative"],
        "rate": rate,
        "rate_text": "\u2013" if rate is None else percent(rate),
        "interval": interval,
        "rated_share": percent(feedback["count"] / stats["requests"]) if stats["requests"] else "",
    }


async def analytics_context(request: web.Request) -> dict[str, Any]:
    """Everything analytics.html shows for the URL's filter, split and bucket."""
    filt = url_filter(request.query)
    split, bucket = split_of(request.query), bucket_of(request.query)
    condition = compile_filter(filt.tree)
    store = request.app[STORE]
    stats = await request_stats(store, condition)
    keys = await distinct_keys(store, "properties")
    context: dict[str, Any] = {
        **filter_bar(filt),
        "split": split or "",
        "split_choices": split_choices(keys, split),
        "split_text": "" if split is None else split_label(split),
        "bucket": bucket or "",
        "view": view_params(request.query),
        "top": TOP_SERIES,
        "figures": headline(stats),
        "rate_chart": Markup(""),
        "count_chart": Markup(""),
        "unit": "",
        "scores": [],
        "negatives": [],
        "compare_state": compare_state(request.query),
        "compare": await comparison_context(store, request.query, filt),
    }
    if not stats["feedback"]["count"] and not stats["scores"]:
        return context
    unit, groups = await ratings_over_time(store, condition, bucket, split)
    if groups:
        categories, rates, counts = over_time(groups, unit, split)
        x_label = bucket_label(unit)
        per = f"per {unit}" + (f", by {split_label(split)}" if split else "")
        context["rate_chart"] = line_chart(
            f"Positive rate {per}", categories, rates, percent, 1.0, whole_percent, x_label
        )
        context["count_chart"] = column_chart(
            f"Rated requests {per}", categories, counts, number, x_label=x_label
        )
    context["unit"] = unit
    context["scores"] = score_charts(await score_distributions(store, condition))
    context["negatives"] = negative_rows(await recent_negatives(store, condition, NEGATIVES), filt)
    return context


async def page(request: web.Request) -> web.StreamResponse:
    """The analytics page for the URL's filter."""
    return render(request, "analytics.html", await analytics_context(request))
