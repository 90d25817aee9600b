"""Numbers, times and rates as the dashboard shows them; the templates' filters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Format = Callable[[float], str]


def number(value: float) -> str:
    """1234 -> "1,234"; 0.25 -> "0.25"; 12.5 -> "12.50"."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1 else f"{value:,.2f}"


def percent(value: float) -> str:
    """0.756 -> "75.6%"."""
    return f"{value * 100:.1f}%"


def ms(value: float) -> str:
    """412.4 -> "412 ms"; 12500 -> "12.50 s"."""
    return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:,.0f} ms"


def usd(value: float) -> str:
    """0 -> "$0"; 0.000123 -> "$0.000123"; 1234.5 -> "$1,234.50"."""
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4g}"


def when(value: str | None) -> str:
    """A stored UTC timestamp as "2024-05-01 10:00:00 UTC"; "" for none."""
    if not value:
        return ""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return parsed.strftime("%Y-%m-%d %H:%M:%S UTC")


def optional(fmt: Format) -> Callable[[float | None], str]:
    """`fmt` that shows a missing value as an en dash."""

    def show(value: float | None) -> str:
        return "\u2013" if value is None else fmt(value)

    return show


FILTERS: dict[str, Callable[..., str]] = {
    "number": optional(number),
    "percent": optional(percent),
    "ms": optional(ms),
    "usd": optional(usd),
    "when": when,
}
