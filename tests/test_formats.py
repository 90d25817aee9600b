"""proxy.dashboard.formats: numbers, durations, money, rates and times as the pages show them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from proxy.dashboard.formats import FILTERS, ms, number, percent, usd


@pytest.mark.parametrize(
    ("fmt", "value", "text"),
    [
        (number, 1234, "1,234"),
        (number, 0.25, "0.25"),
        (number, 12.5, "12.5"),
        (number, 92.5, "92.5"),
        (number, 1.5, "1.5"),
        (number, 1234.567, "1,234.57"),
        (percent, 0.756, "75.6%"),
        (ms, 412.4, "412 ms"),
        (ms, 12_500, "12.5 s"),
        (ms, 12_345, "12.35 s"),
        (ms, 0, "0 ms"),
        (ms, 0.42, "0.42 ms"),
        (ms, 0.4, "0.4 ms"),
        (ms, 2.5, "2.5 ms"),
        (ms, 2.0, "2 ms"),
        (usd, 0, "$0"),
        (usd, 0.000123, "$0.000123"),
        (usd, 0.0000072, "$0.000007"),
        (usd, 0.0357, "$0.0357"),
        (usd, 1e-9, "$<0.000001"),
        (usd, 1234.5, "$1,234.50"),
    ],
)
def test_formats(fmt: Callable[[float], str], value: float, text: str) -> None:
    assert fmt(value) == text


@pytest.mark.parametrize("name", ["number", "percent", "ms", "usd"])
def test_filters_show_a_missing_value_as_a_dash(name: str) -> None:
    assert FILTERS[name](None) == "\u2013"
    assert FILTERS[name](1) != "\u2013"
