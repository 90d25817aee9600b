"""The analytics page's comparison: two groups (two models, users or values of a property) or two
periods (the last N days against the N before), each with its positive rate and 95% Wilson
interval, the difference with its interval, and the verdict in plain words.

The numbers and the verdict are storage.query.compare's. Groups are the page's filter ANDed
with one value each; periods are the page's filter without its time range, over the two spans.
The choice lives in the URL: `cmp=groups&cmp_by=property:prompt-version&cmp_a=v1&cmp_b=v2` or
`cmp=periods&cmp_days=7`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from multidict import MultiDict, MultiMapping

from proxy.dashboard.filters import UrlFilter, url_filter
from proxy.dashboard.formats import percent
from proxy.dashboard.ranges import Estimate, interval_chart
from proxy.dashboard.splits import COLUMN_SPLITS, split_label, split_of
from storage import Store
from storage.errors import QueryError
from storage.query.analytics import top_values
from storage.query.compare import MIN_RATED, Comparison, compare_conditions, period_filters
from storage.query.filters import compile_filter, conjoin
from storage.query.stats import PROPERTY_PREFIX

MODES = ("groups", "periods")
PARAMS = ("cmp", "cmp_by", "cmp_a", "cmp_b", "cmp_days")
TIME_PARAMS = frozenset({"since", "from", "to"})
DEFAULT_DAYS = 7
MAX_DAYS = 366
MAX_VALUE_CHARS = 1024
SUGGESTIONS = 20
COLUMNS = {"model": "model", "user": "user_id"}


@dataclass(frozen=True, slots=True)
class Choice:
    """The URL's comparison: its mode (None: not asked), the groups' dimension and values, or
    the periods' length in days."""

    mode: str | None
    by: str
    a: str
    b: str
    days: int


def _value(query: MultiMapping[str], name: str) -> str:
    value = query.get(name, "")
    if len(value) > MAX_VALUE_CHARS:
        raise QueryError(f"{name} is longer than {MAX_VALUE_CHARS} characters")
    return value


def choice_of(query: MultiMapping[str]) -> Choice:
    """The comparison the URL asks for; QueryError names a bad parameter."""
    mode = query.get("cmp", "").strip() or None
    if mode is not None and mode not in MODES:
        raise QueryError(f"cmp must be {' or '.join(MODES)}, not {mode[:40]!r}")
    days_text = query.get("cmp_days", "").strip()
    days = DEFAULT_DAYS
    if days_text:
        if not days_text.isdigit() or not 1 <= int(days_text) <= MAX_DAYS:
            raise QueryError(
                f"cmp_days must be a whole number of days from 1 to {MAX_DAYS}, "
                f"not {days_text[:40]!r}"
            )
        days = int(days_text)
    by = split_of(query, "cmp_by") or "model"
    return Choice(mode, by, _value(query, "cmp_a"), _value(query, "cmp_b"), days)


def compare_state(query: MultiMapping[str]) -> list[tuple[str, str]]:
    """The comparison's parameters in the URL, for the filter form to carry along."""
    return [(name, query[name]) for name in PARAMS if query.get(name, "")]


def group_tree(by: str, value: str) -> Any:
    """The filter tree of one group: the requests whose `by` is `value`."""
    if by in COLUMN_SPLITS:
        return {"request": {COLUMNS[by]: {"equals": value}}}
    return {"properties": {by.removeprefix(PROPERTY_PREFIX): {"equals": value}}}


def _days(days: int) -> str:
    return "day" if days == 1 else f"{days} days"


def _span(start: datetime, end: datetime) -> str:
    return f"{start:%b %d %H:%M} to {end:%b %d %H:%M} UTC".replace(" 0", " ")


def without_time(query: MultiMapping[str]) -> UrlFilter:
    """The URL's filter with its time range left out (the periods bring their own)."""
    return url_filter(MultiDict((k, v) for k, v in query.items() if k not in TIME_PARAMS))


def points(value: float) -> str:
    return f"{value * 100:+.1f}"


def comparison_view(found: Comparison) -> dict[str, Any]:
    """The comparison as the template shows it: each group, the interval chart, the verdict."""
    groups = []
    for role, group in (("A", found.a), ("B", found.b)):
        interval = group.interval
        groups.append(
            {
                "role": role,
                "label": group.label,
                "rated": group.rated,
                "positive": group.positive,
                "rate": group.rate,
                "rate_text": "\u2013" if group.rate is None else percent(group.rate),
                "interval_text": ""
                if interval is None
                else f"{percent(interval[0])} to {percent(interval[1])}",
            }
        )
    estimates = [
        Estimate(g.label, g.rate, *g.interval, note=f"{g.rated:,} rated")
        for g in (found.a, found.b)
        if g.rate is not None and g.interval is not None
    ]
    difference = ""
    if found.difference is not None and found.interval is not None:
        low, high = found.interval
        difference = f"{points(found.difference)} points (95% CI {points(low)} to {points(high)})"
    return {
        "groups": groups,
        "chart": interval_chart("Positive rate with its 95% interval", estimates),
        "difference": found.difference,
        "difference_text": difference,
        "verdict": found.verdict,
        "verdict_class": "verdict-" + found.verdict.replace(" ", "-"),
        "sentence": found.sentence,
    }


async def comparison_context(
    store: Store, query: MultiMapping[str], filt: UrlFilter, now: datetime | None = None
) -> dict[str, Any]:
    """What analytics_compare.html needs: the forms' state and, when asked, the comparison."""
    choice = choice_of(query)
    suggestions = await top_values(store, compile_filter(filt.tree), choice.by, SUGGESTIONS)
    context: dict[str, Any] = {
        "choice": choice,
        "by_label": split_label(choice.by),
        "suggestions": [str(found["value"]) for found in suggestions],
        "min_rated": MIN_RATED,
        "result": None,
        "periods": "",
        "missing": "",
    }
    if choice.mode == "groups":
        if not choice.a or not choice.b:
            context["missing"] = f"Pick a value of {split_label(choice.by)} for A and for B."
            return context
        sides = [
            (
                f"{split_label(choice.by)} = {value}",
                compile_filter(conjoin(filt.tree, group_tree(choice.by, value))),
            )
            for value in (choice.a, choice.b)
        ]
        found = await compare_conditions(store, sides[0], sides[1])
    elif choice.mode == "periods":
        moment = now or datetime.now(UTC)
        tree_a, tree_b = period_filters(without_time(query).tree, moment, choice.days)
        span = timedelta(days=choice.days)
        label_b, label_a = f"last {_days(choice.days)}", f"the {_days(choice.days)} before"
        context["periods"] = (
            f"A, {label_a}: {_span(moment - 2 * span, moment - span)}; "
            f"B, {label_b}: {_span(moment - span, moment)}."
        )
        found = await compare_conditions(
            store, (label_a, compile_filter(tree_a)), (label_b, compile_filter(tree_b))
        )
    else:
        return context
    context["result"] = comparison_view(found)
    return context
