"""Two groups' positive rates compared: Wilson intervals, Newcombe's interval on the difference.

Group A is the baseline (prompt v1, last week), group B the candidate (v2, this week). Each
group's 95% interval is Wilson's score interval; the interval on B - A is Newcombe's hybrid
score interval (his method 10), which stays inside [-1, 1] and behaves at rates near 0 or 1
where the textbook Wald interval does not. The verdict is "better" or "worse" when that
interval excludes zero, "no clear difference" when it does not, and "not enough data" while
either group has fewer than MIN_RATED rated requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from storage import Store
from storage.models import utc_iso
from storage.query.analytics import property_tests, rated_cells, rated_rows
from storage.query.filters import ALL, Condition, conjoin, parts

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile
MIN_RATED = 30

Verdict = Literal["better", "worse", "no clear difference", "not enough data"]
Interval = tuple[float, float]


def wilson(positive: int, rated: int, z: float = Z95) -> Interval:
    """Wilson's score interval for `positive` successes out of `rated` (rated > 0)."""
    if rated <= 0 or not 0 <= positive <= rated:
        raise ValueError(f"need 0 <= positive <= rated and rated > 0, got {positive}/{rated}")
    p = positive / rated
    z2 = z * z
    scale = 1 + z2 / rated
    centre = (p + z2 / (2 * rated)) / scale
    half = z / scale * math.sqrt(p * (1 - p) / rated + z2 / (4 * rated * rated))
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(a: tuple[int, int], b: tuple[int, int], z: float = Z95) -> Interval:
    """Newcombe's hybrid score interval on rate(b) - rate(a), each given as (positive, rated)."""
    pa, pb = a[0] / a[1], b[0] / b[1]
    la, ua = wilson(*a, z=z)
    lb, ub = wilson(*b, z=z)
    difference = pb - pa
    return (
        difference - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2),
        difference + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2),
    )


@dataclass(frozen=True, slots=True)
class Rate:
    """One group: its label, how many of its requests were rated, and how many positively."""

    label: str
    rated: int
    positive: int

    @property
    def rate(self) -> float | None:
        return self.positive / self.rated if self.rated else None

    @property
    def interval(self) -> Interval | None:
        return wilson(self.positive, self.rated) if self.rated else None

    def describe(self) -> str:
        """E.g. "64.0% positive of 120 rated (95% CI 55.1% to 72.1%)"."""
        if self.rate is None or self.interval is None:
            return "no rated requests"
        low, high = self.interval
        return (
            f"{_percent(self.rate)} positive of {self.rated:,} rated "
            f"(95% CI {_percent(low)} to {_percent(high)})"
        )

    def as_dict(self) -> dict[str, Any]:
        interval = self.interval
        return {
            "label": self.label,
            "rated": self.rated,
            "positive": self.positive,
            "negative": self.rated - self.positive,
            "positive_rate": self.rate,
            "interval": None if interval is None else list(interval),
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """B against A: the difference in positive rate, its 95% interval and the verdict."""

    a: Rate
    b: Rate
    difference: float | None
    interval: Interval | None
    verdict: Verdict
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "difference": self.difference,
            "interval": None if self.interval is None else list(self.interval),
            "verdict": self.verdict,
            "sentence": self.sentence,
        }


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _points(value: float) -> str:
    return f"{value * 100:+.1f}"


def compare(a: Rate, b: Rate, min_rated: int = MIN_RATED) -> Comparison:
    """The comparison of B with A, and a sentence saying what it means in plain words."""
    if a.rated and b.rated:
        difference: float | None = b.positive / b.rated - a.positive / a.rated
        interval: Interval | None = newcombe((a.positive, a.rated), (b.positive, b.rated))
    else:
        difference = interval = None
    short = [group for group in (a, b) if group.rated < min_rated]
    if short or difference is None or interval is None:
        counts = " and ".join(f"{g.label} has {g.rated:,}" for g in short)
        sentence = (
            f"Not enough data to compare: {counts} rated "
            f"{'request' if len(short) == 1 and short[0].rated == 1 else 'requests'}; "
            f"at least {min_rated} rated in each group are needed."
        )
        return Comparison(a, b, difference, interval, "not enough data", sentence)
    low, high = interval
    spread = f"{_points(difference)} points (95% CI {_points(low)} to {_points(high)})"
    verdict: Verdict
    if low > 0:
        verdict = "better"
        sentence = (
            f"{b.label} is better than {a.label}: {b.describe()} against {a.describe()}, "
            f"{spread}. The interval excludes zero, so chance alone is an unlikely explanation."
        )
    elif high < 0:
        verdict = "worse"
        sentence = (
            f"{b.label} is worse than {a.label}: {b.describe()} against {a.describe()}, "
            f"{spread}. The interval excludes zero, so chance alone is an unlikely explanation."
        )
    else:
        verdict = "no clear difference"
        sentence = (
            f"No clear difference between {b.label} and {a.label}: {b.describe()} against "
            f"{a.describe()}, {spread}. The interval includes zero; more ratings would narrow it."
        )
    return Comparison(a, b, difference, interval, verdict, sentence)


def _rated_source(condition: Condition) -> tuple[str, list[Any]]:
    """`rated, positive` FROM ... WHERE over the rated requests matching `condition`, and its
    parameters.

    A group of property values (a time range and properties equal to values, nothing else)
    is counted from the rated property rows alone, by the created_at and rating they carry
    (migrations 011 and 012). Any other condition reads the rated rows (rated_rows).
    """
    found = parts(condition)
    if not found.properties or found.rest.sql != ALL.sql:
        source, rating = rated_rows(condition)
        return f"COUNT(*) AS rated, SUM({rating}) AS positive {source} WHERE {condition.sql}", [
            *condition.params
        ]
    (key, value), others = found.properties[0], found.properties[1:]
    tests, params = property_tests(found, "lp", others)
    source = (
        "COUNT(*) AS rated, SUM(lp.rating) AS positive FROM request_properties lp "
        f"WHERE lp.key = ? AND lp.value = ? AND lp.rating IS NOT NULL{tests}"
    )
    return source, [key, value, *params]


async def rated_counts(store: Store, condition: Condition) -> tuple[int, int]:
    """(rated, positive) over the requests matching `condition`: from the rollups when they
    answer it (a period, a model), else from the rated rows (_rated_source)."""
    cells = await rated_cells(store, condition, None, False)
    if cells is not None:
        rated, positive = cells.get((None, None), [0, 0])
        return rated, positive
    select, params = _rated_source(condition)
    rows = await store.fetch(f"SELECT {select}", params)
    return int(rows[0]["rated"]), int(rows[0]["positive"] or 0)


async def compare_conditions(
    store: Store, a: tuple[str, Condition], b: tuple[str, Condition], min_rated: int = MIN_RATED
) -> Comparison:
    """The comparison of the requests matching B's condition with those matching A's."""
    (label_a, condition_a), (label_b, condition_b) = a, b
    group_a = Rate(label_a, *await rated_counts(store, condition_a))
    group_b = Rate(label_b, *await rated_counts(store, condition_b))
    return compare(group_a, group_b, min_rated)


def period_filters(node: Any, now: datetime, days: int) -> tuple[Any, Any]:
    """`node` over the `days` before `now` (B) and over the `days` before those (A), as trees."""
    if days < 1:
        raise ValueError("a period is at least one day")
    edges = [utc_iso((now - timedelta(days=days * k)).timestamp()) for k in (2, 1, 0)]

    def between(start: str, end: str) -> Any:
        return conjoin(node, {"request": {"created_at": {"gte": start, "lt": end}}})

    return between(edges[0], edges[1]), between(edges[1], edges[2])
