"""request_stats groups shaped for charts: a gap-free time axis, and one series per split value.

The stats API answers only the buckets that hold rows; a chart needs every hour or day in
between (an empty hour is a gap in a line, not a shorter axis). Splits by user or property can
have thousands of values: the most frequent few get their own series and the rest is summed
into "other", so a chart stays readable and its size bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from proxy.dashboard.charts import Series

MAX_BUCKETS = 24 * 62
TOP_SERIES = 6
OTHER = "other"
NONE_LABEL = "(none)"
FORMATS = {"day": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}
STEPS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}

Group = Mapping[str, Any]


def bucket_time(unit: str, key: str) -> datetime:
    """The start of a bucket from its stats key ("2024-05-01", "2024-05-01T10" or longer)."""
    length = 10 if unit == "day" else 13
    return datetime.strptime(key[:length], FORMATS[unit])


def axis(unit: str, keys: Iterable[str]) -> list[str]:
    """Every bucket from the first to the last key, at most MAX_BUCKETS (the newest kept)."""
    times = sorted({bucket_time(unit, key) for key in keys})
    if not times:
        return []
    step, last = STEPS[unit], times[-1]
    first = max(times[0], last - step * (MAX_BUCKETS - 1))
    count = int((last - first) / step) + 1
    return [(first + step * i).strftime(FORMATS[unit]) for i in range(count)]


def bucket_label(unit: str) -> Callable[[str], str]:
    """How a chart shows a bucket: "Nov 18" for a day, "11-18 10:00" for an hour."""
    if unit == "day":
        return lambda key: bucket_time("day", key).strftime("%b %d").replace(" 0", " ")
    return lambda key: f"{key[5:10]} {key[11:13]}:00"


def label(value: Any) -> str:
    """A group key part as text; a missing value (no user, no property) as "(none)"."""
    return NONE_LABEL if value is None else str(value)


@dataclass(slots=True)
class Cell:
    """Counters summed for one (bucket, split value): what a series reads a point from."""

    groups: list[Group]

    def total(self, read: Callable[[Group], float]) -> float:
        return sum(read(group) for group in self.groups)


def split(
    groups: Sequence[Group], unit: str, by: str | None, weight: Callable[[Group], float]
) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    """(axis, series names, cells by (bucket, name)) from groups keyed by `unit` and `by`.

    Series are the TOP_SERIES split values of the highest total `weight`, then OTHER.
    """
    categories = axis(unit, (g["key"][unit] for g in groups))
    kept = set(categories)
    names: list[str] = []
    if by is not None:
        weights: dict[str, float] = {}
        for group in groups:
            name = label(group["key"][by])
            weights[name] = weights.get(name, 0.0) + weight(group)
        ranked = sorted(weights, key=lambda n: (-weights[n], n))
        names = ranked[:TOP_SERIES] + ([OTHER] if len(ranked) > TOP_SERIES else [])
    top = set(names[:TOP_SERIES])
    cells: dict[tuple[str, str], Cell] = {}
    for group in groups:
        bucket = bucket_time(unit, group["key"][unit]).strftime(FORMATS[unit])
        if bucket not in kept:
            continue
        name = "all" if by is None else label(group["key"][by])
        if by is not None and name not in top:
            name = OTHER
        cells.setdefault((bucket, name), Cell([])).groups.append(group)
    return categories, names or ["all"], cells


def series(
    categories: Sequence[str],
    names: Sequence[str],
    cells: Mapping[tuple[str, str], Cell],
    value: Callable[[Cell], float | None],
    note: Callable[[Cell], str] | None = None,
) -> list[Series]:
    """One Series per name with `value` of each bucket's cell (None where there is no cell)."""
    out = []
    for name in names:
        values: list[float | None] = []
        notes: list[str] = []
        for bucket in categories:
            cell = cells.get((bucket, name))
            values.append(None if cell is None else value(cell))
            notes.append("" if cell is None or note is None else note(cell))
        out.append(Series(name, values, notes if note is not None else None))
    return out


def positive_rate(cell: Cell) -> float | None:
    """The cell's positive rate, None when nothing in it was rated."""
    rated = cell.total(lambda g: g["feedback"]["count"])
    return None if not rated else cell.total(lambda g: g["feedback"]["positive"]) / rated


def rated_note(cell: Cell) -> str:
    rated = int(cell.total(lambda g: g["feedback"]["count"]))
    return f"{rated:,} rated"
