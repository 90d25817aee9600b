"""Terminal output shared by the commands: aligned tables, JSON lines, number formats, the
progress bar."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

import orjson

PROGRESS_EVERY_S = 0.1
BAR_WIDTH = 24


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns left-aligned to their widest cell, two spaces apart."""
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def print_json_lines(items: Iterable[Any]) -> None:
    """One JSON object per line on stdout."""
    for item in items:
        sys.stdout.write(orjson.dumps(item).decode() + "\n")


def nothing_found(what: str, store: str) -> None:
    """Say on stderr which store an empty answer came from, so a wrong --db is not mistaken
    for an empty log."""
    print(f"relaylog: {what} in {store}", file=sys.stderr)


def cell(value: Any) -> str:
    """A table cell: '-' for nothing, one decimal for floats."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def money(value: float) -> str:
    """1234.5 -> "$1,234.5000"; under a cent, four significant digits: 0.0000228 -> "$0.0000228".

    Four decimals alone would print a day of small calls as "$0.0000", as if they were free.
    """
    if value == 0 or abs(value) >= 0.01:
        return f"${value:,.4f}"
    if abs(value) < 1e-10:
        return "<$0.0000000001"
    decimals = 3 - math.floor(math.log10(abs(value)))
    digits = f"{abs(value):.{decimals}f}".rstrip("0")
    return f"{'-' if value < 0 else ''}${digits}"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


class Progress:
    """A one-line progress bar on a terminal stream, redrawn at most every 0.1 s."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream = stream
        self.total = total
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.drawn < PROGRESS_EVERY_S:
            return
        self.drawn = now
        share = done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * min(share, 1.0))
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\rexporting [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%} "
            f"{done:,}/{self.total:,} rows  {rate:,.0f} rows/s"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()
