"""storage.query.compare: Wilson and Newcombe intervals, the verdict, its sentence, the counts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from storage import Row, Store, open_store
from storage.query.compare import (
    MIN_RATED,
    Rate,
    compare,
    compare_conditions,
    newcombe,
    period_filters,
    rated_counts,
    wilson,
)
from storage.query.filters import compile_filter


@pytest.mark.parametrize(
    ("positive", "rated", "low", "high"),
    [
        # Worked by hand: p = 0.5, z^2/n = 0.38415, centre 0.5, half-width 0.26341.
        (5, 10, 0.2366, 0.7634),
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I.
        (0, 10, 0.0, 0.2775),
        (81, 263, 0.2553, 0.3662),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_matches_published_values(
    positive: int, rated: int, low: float, high: float
) -> None:
    assert wilson(positive, rated) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize(("positive", "rated"), [(0, 0), (3, 2), (-1, 5)])
def test_wilson_refuses_impossible_counts(positive: int, rated: int) -> None:
    with pytest.raises(ValueError, match="positive <= rated"):
        wilson(positive, rated)


@pytest.mark.parametrize(
    ("a", "b", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent
        # proportions", Table II, method 10: b - a for 56/70 - 48/80, 9/10 - 3/10, 5/56 - 0/29.
        ((48, 80), (56, 70), 0.0524, 0.3339),
        ((3, 10), (9, 10), 0.1705, 0.8090),
        ((0, 29), (5, 56), -0.0381, 0.1926),
    ],
)
def test_newcombe_matches_published_values(
    a: tuple[int, int], b: tuple[int, int], low: float, high: float
) -> None:
    assert newcombe(a, b) == pytest.approx((low, high), abs=5e-5)


def test_newcombe_is_antisymmetric() -> None:
    low, high = newcombe((48, 80), (56, 70))
    assert newcombe((56, 70), (48, 80)) == pytest.approx((-high, -low))


def test_better_when_the_interval_is_above_zero() -> None:
    result = compare(Rate("v1", 80, 48), Rate("v2", 70, 56))
    assert result.verdict == "better"
    assert result.difference == pytest.approx(0.8 - 0.6)
    assert result.interval == pytest.approx((0.0524, 0.3339), abs=5e-5)
    assert result.sentence.startswith("v2 is better than v1: 80.0% positive of 70 rated")
    assert "against 60.0% positive of 80 rated" in result.sentence
    assert "+20.0 points (95% CI +5.2 to +33.4)" in result.sentence


def test_worse_when_the_interval_is_below_zero() -> None:
    result = compare(Rate("last week", 70, 56), Rate("this week", 80, 48))
    assert result.verdict == "worse"
    assert result.interval == pytest.approx((-0.3339, -0.0524), abs=5e-5)
    assert result.sentence.startswith("this week is worse than last week:")
    assert "-20.0 points (95% CI -33.4 to -5.2)" in result.sentence


def test_no_clear_difference_when_the_interval_spans_zero() -> None:
    result = compare(Rate("v1", 100, 60), Rate("v2", 100, 64))
    assert result.verdict == "no clear difference"
    assert result.interval is not None
    low, high = result.interval
    assert low < 0 < high
    assert result.sentence.startswith("No clear difference between v2 and v1:")
    assert "includes zero" in result.sentence


@pytest.mark.parametrize(
    ("rated_a", "rated_b", "says"),
    [
        (MIN_RATED - 1, 500, f"v1 has {MIN_RATED - 1} rated requests"),
        (500, 1, "v2 has 1 rated request;"),
        (0, 0, "v1 has 0 and v2 has 0 rated requests"),
    ],
)
def test_not_enough_data_below_the_minimum(rated_a: int, rated_b: int, says: str) -> None:
    # Rates this far apart would otherwise be a clear difference.
    result = compare(Rate("v1", rated_a, 0), Rate("v2", rated_b, rated_b))
    assert result.verdict == "not enough data"
    assert says in result.sentence
    assert f"at least {MIN_RATED} rated in each group" in result.sentence
    assert (result.interval is None) == (rated_a == 0 or rated_b == 0)


def test_as_dict_carries_rates_and_intervals() -> None:
    data = compare(Rate("v1", 80, 48), Rate("v2", 70, 56)).as_dict()
    assert data["a"] == {
        "label": "v1",
        "rated": 80,
        "positive": 48,
        "negative": 32,
        "positive_rate": 0.6,
        "interval": pytest.approx(list(wilson(48, 80))),
    }
    assert data["b"]["positive_rate"] == 0.8
    assert data["verdict"] == "better"
    assert data["interval"] == pytest.approx([0.0524, 0.3339], abs=5e-5)


def test_period_filters_are_adjacent_windows_ending_now() -> None:
    now = datetime(2024, 5, 15, 12, 0, tzinfo=UTC)
    before, current = period_filters({"request": {"model": {"equals": "m"}}}, now, 7)
    assert current == {
        "left": {"request": {"model": {"equals": "m"}}},
        "operator": "and",
        "right": {
            "request": {
                "created_at": {"gte": "2024-05-08T12:00:00.000Z", "lt": "2024-05-15T12:00:00.000Z"}
            }
        },
    }
    assert before["right"]["request"]["created_at"] == {
        "gte": "2024-05-01T12:00:00.000Z",
        "lt": "2024-05-08T12:00:00.000Z",
    }
    assert period_filters("all", now, 1)[1] == {
        "request": {
            "created_at": {"gte": "2024-05-14T12:00:00.000Z", "lt": "2024-05-15T12:00:00.000Z"}
        }
    }
    with pytest.raises(ValueError, match="at least one day"):
        period_filters("all", now, 0)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """A store holding 40 rated requests of prompt v1 (24 up) and 50 of v2 (45 up)."""
    opened = open_store(store_url)
    await opened.open()
    rows = [
        Row(
            id=f"{version}-{i}",
            created_at=f"2024-05-{10 if version == 'v1' else 12}T10:00:{i:02d}.000Z",
            method="POST",
            path="/v1/chat/completions",
            model="m",
            properties={"prompt_version": version},
        )
        for version, count in (("v1", 40), ("v2", 50))
        for i in range(count)
    ]
    rows.append(Row(id="unrated", created_at="2024-05-12T11:00:00.000Z", method="POST", path="/"))
    await opened.write_batch(rows)
    for i in range(40):
        await opened.upsert_feedback(f"v1-{i}", i < 24)
    for i in range(50):
        await opened.upsert_feedback(f"v2-{i}", i < 45)
    yield opened
    await opened.close()


def version(name: str) -> object:
    return {"properties": {"prompt_version": {"equals": name}}}


async def test_rated_counts_over_a_filter(store: Store) -> None:
    assert await rated_counts(store, compile_filter(version("v1"))) == (40, 24)
    assert await rated_counts(store, compile_filter(version("v2"))) == (50, 45)
    assert await rated_counts(store, compile_filter("all")) == (90, 69)
    assert await rated_counts(store, compile_filter(version("v3"))) == (0, 0)


async def test_compare_conditions_two_property_groups(store: Store) -> None:
    result = await compare_conditions(
        store, ("v1", compile_filter(version("v1"))), ("v2", compile_filter(version("v2")))
    )
    assert (result.a.rated, result.a.positive) == (40, 24)
    assert (result.b.rated, result.b.positive) == (50, 45)
    assert result.difference == pytest.approx(0.9 - 0.6)
    assert result.interval == pytest.approx(newcombe((24, 40), (45, 50)))
    assert result.verdict == "better"


async def test_compare_conditions_two_periods(store: Store) -> None:
    now = datetime(2024, 5, 13, 0, 0, tzinfo=UTC)
    before, current = period_filters("all", now, 2)
    result = await compare_conditions(
        store, ("before", compile_filter(before)), ("current", compile_filter(current))
    )
    # v1 was rated on the 10th (the earlier two days), v2 on the 12th (the last two days).
    assert (result.a.rated, result.b.rated) == (40, 50)
    assert result.verdict == "better"
