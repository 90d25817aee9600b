"""The CLI's number formats (proxy/cli/output.py)."""

from __future__ import annotations

import pytest

from proxy.cli.output import money


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0.0000"),
        (0.2131, "$0.2131"),
        (1234.5, "$1,234.5000"),
        (0.01, "$0.0100"),
        (0.00216, "$0.00216"),
        (0.0021599999, "$0.00216"),
        (0.00011955, "$0.0001196"),
        (0.00002284, "$0.00002284"),
        (4e-8, "$0.00000004"),
        (1e-12, "<$0.0000000001"),
        (-0.0005, "-$0.0005"),
    ],
)
def test_money_keeps_the_digits_of_a_cost_under_a_cent(value: float, shown: str) -> None:
    assert money(value) == shown
