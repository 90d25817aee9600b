"""Numbers, times and rates as the dashboard shows them; the templates' filters."""

from __future__ import annotations

from collections.abc import Callable

Format = Callable[[float], str]


def _trimmed(text: str) -> str:
    """ "12.50" -> "12.5", "2.00" -> "2": no trailing zeros after the point."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def number(value: float) -> str:
    """1234 -> "1,234"; 0.25 -> "0.25"; 12.5 -> "12.5"; 1234.567 -> "1,234.57"."""
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 1 else _trimmed(f"{value:,.2f}")


def percent(value: float) -> str:
    """0.756 -> "75.6%"."""
    return f"{value * 100:.1f}%"


def whole_percent(value: float) -> str:
    """0.75 -> "75%", for an axis."""
    return f"{value * 100:.0f}%"


def ms(value: float) -> str:
    """0.42 -> "0.42 ms"; 2.5 -> "2.5 ms"; 412.4 -> "412 ms"; 12500 -> "12.5 s".

    Sub-millisecond latencies (a cache hit, a local upstream) keep their digits instead of
    all reading "0 ms" or "1 ms"."""
    if value >= 10_000:
        return f"{_trimmed(f'{value / 1000:.2f}')} s"
    if abs(value) < 1:
        return f"{_trimmed(f'{value:.2f}')} ms"
    if abs(value) < 10:
        return f"{_trimmed(f'{value:.1f}')} ms"
    return f"{value:,.0f} ms"


def usd(value: float) -> str:
    """0 -> "$0"; 0.0000072 -> "$0.000007"; 0.0357 -> "$0.0357"; 1234.5 -> "$1,234.50"."""
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return "$" + (f"{value:.6f}".rstrip("0").rstrip(".") if abs(value) >= 5e-7 else "<0.000001")


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
}
