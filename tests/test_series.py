"""proxy.dashboard.series: stats groups to chart series, a gap-free axis, top splits and "other"."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.dashboard.series import (
    MAX_BUCKETS,
    OTHER,
    TOP_SERIES,
    axis,
    bucket_label,
    positive_rate,
    rated_note,
    series,
    split,
)


def group(key: dict[str, Any], rated: int = 0, positive: int = 0) -> dict[str, Any]:
    return {"key": key, "feedback": {"count": rated, "positive": positive}}


def test_axis_fills_the_gaps() -> None:
    assert axis("day", ["2024-05-03", "2024-05-01"]) == ["2024-05-01", "2024-05-02", "2024-05-03"]
    assert axis("hour", ["2024-05-01T23", "2024-05-02T01"]) == [
        "2024-05-01T23",
        "2024-05-02T00",
        "2024-05-02T01",
    ]
    # Longer keys (a full timestamp) are cut to the bucket.
    assert axis("hour", ["2024-05-01T10:30:00"]) == ["2024-05-01T10"]
    assert axis("day", []) == []


def test_axis_keeps_the_newest_buckets() -> None:
    found = axis("hour", ["2020-01-01T00", "2024-05-01T00"])
    assert len(found) == MAX_BUCKETS
    assert found[-1] == "2024-05-01T00"


def test_split_by_none_is_one_series_of_all() -> None:
    groups = [group({"day": "2024-05-01"}, 4, 3), group({"day": "2024-05-03"}, 2, 0)]
    categories, names, cells = split(groups, "day", None, lambda g: 1)
    assert names == ["all"]
    [rate] = series(categories, names, cells, positive_rate, rated_note)
    assert rate.values == [0.75, None, 0.0]
    assert rate.notes == ["4 rated", "", "2 rated"]


def test_split_keeps_the_heaviest_values_and_sums_the_rest_into_other() -> None:
    groups = [
        group({"day": "2024-05-01", "user": f"u{i}"}, rated=10 + i, positive=i)
        for i in range(TOP_SERIES + 2)
    ]
    groups.append(group({"day": "2024-05-01", "user": None}, rated=1, positive=1))
    categories, names, cells = split(groups, "day", "user", lambda g: g["feedback"]["count"])
    heaviest = [f"u{i}" for i in range(TOP_SERIES + 1, 1, -1)]
    assert names == [*heaviest, OTHER]
    found = {s.name: s.values for s in series(categories, names, cells, positive_rate)}
    # u0 (10 rated, 0 up), u1 (11 rated, 1 up) and no user (1 rated, 1 up) make "other".
    assert found[OTHER] == pytest.approx([2 / 22])
    assert found["u7"] == pytest.approx([7 / 17])


def test_a_missing_split_value_is_named() -> None:
    groups = [group({"day": "2024-05-01", "model": None}, 1, 1)]
    assert split(groups, "day", "model", lambda g: 1)[1] == ["(none)"]


def test_unrated_cells_have_no_rate() -> None:
    groups = [group({"day": "2024-05-01"}, 0, 0)]
    categories, names, cells = split(groups, "day", None, lambda g: 1)
    assert series(categories, names, cells, positive_rate)[0].values == [None]


def test_bucket_labels() -> None:
    assert bucket_label("day")("2024-05-01") == "May 1"
    assert bucket_label("day")("2024-11-18") == "Nov 18"
    assert bucket_label("hour")("2024-05-01T09") == "05-01 09:00"
