"""Charts of ranges on one horizontal axis: a session's requests as spans in time, and rates as
dots with their 95% intervals. Escaped and coloured as charts.py's charts are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from proxy.dashboard.charts import (
    BOTTOM,
    JOIN,
    PALETTE,
    RIGHT,
    TOP,
    WIDTH,
    empty,
    figure,
    nice_max,
    short,
)
from proxy.dashboard.formats import Format, ms, percent


@dataclass(frozen=True, slots=True)
class Span:
    """One bar of a timeline: starts `start_ms` after the first, lasts `duration_ms`.

    `depth` indents the label (a session tree's nesting); `href` links the bar.
    """

    label: str
    start_ms: float
    duration_ms: float
    tooltip: str
    depth: int = 0
    href: str | None = None
    color: str = PALETTE[0]


ROW_H = 22
LABEL_W = 220


def _x_grid(height: float, label: Format) -> list[Markup]:
    """Five vertical grid lines right of the label column, labelled with `label(share)`; the
    last label ends at its line, so a wide one ("100.0%") stays inside the chart."""
    return [
        Markup(
            '<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="currentColor" '
            'stroke-opacity="0.15"/>'
            '<text x="{x:.1f}" y="{ty}" text-anchor="{anchor}">{label}</text>'
        ).format(
            x=LABEL_W + (WIDTH - LABEL_W - RIGHT) * i / 4,
            top=TOP,
            bottom=height - BOTTOM,
            ty=height - BOTTOM + 18,
            label=label(i / 4),
            anchor="end" if i == 4 else "middle",
        )
        for i in range(5)
    ]


def timeline(title: str, spans: Sequence[Span]) -> Markup:
    """A bar per span on one time axis, labels on the left: a session's requests in order."""
    if not spans:
        return empty(title, "No requests in this session.")
    end = max(s.start_ms + max(s.duration_ms, 0.0) for s in spans)
    top = nice_max(end)
    width = WIDTH - LABEL_W - RIGHT
    height = TOP + ROW_H * len(spans) + BOTTOM
    parts = _x_grid(height, lambda share: ms(top * share))
    for row, span in enumerate(spans):
        y = TOP + ROW_H * row
        x = LABEL_W + width * span.start_ms / top
        bar = max(2.0, width * max(span.duration_ms, 0.0) / top)
        shape = Markup(
            '<rect class="point" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{}" fill="{}" '
            'data-x="{}" data-y="{}"><title>{}</title></rect>'
        ).format(
            x, y + 4, bar, ROW_H - 8, span.color, span.label, repr(span.duration_ms), span.tooltip
        )
        if span.href is not None:
            shape = Markup('<a href="{}">{}</a>').format(span.href, shape)
        parts.append(
            Markup('<text x="{:.1f}" y="{:.1f}"><title>{}</title>{}</text>{}').format(
                4 + 12 * min(span.depth, 8),
                y + ROW_H / 2 + 4,
                span.label,
                short(span.label, 30 - 2 * min(span.depth, 8)),
                shape,
            )
        )
    svg = Markup(
        '<svg class="plot timeline" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'font-size="12" fill="currentColor">{}</svg>'
    ).format(WIDTH, height, title, JOIN.join(parts))
    return figure(title, svg, kind="timeline")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A rate and its 95% interval, for one row of an interval chart."""

    label: str
    value: float
    low: float
    high: float
    note: str = ""


def interval_chart(title: str, rows: Sequence[Estimate], fmt: Format = percent) -> Markup:
    """Each row's value as a dot with its interval as whiskers, on one 0-1 axis."""
    if not rows:
        return empty(title)
    width = WIDTH - LABEL_W - RIGHT
    height = TOP + ROW_H * 2 * len(rows) + BOTTOM
    parts = _x_grid(height, fmt)
    for row, estimate in enumerate(rows):
        y = TOP + ROW_H * (2 * row + 1)
        low, value, high = (
            LABEL_W + width * max(0.0, min(1.0, v))
            for v in (estimate.low, estimate.value, estimate.high)
        )
        tooltip = f"{estimate.label}: {fmt(estimate.value)} (95% CI {fmt(estimate.low)} to "
        tooltip += f"{fmt(estimate.high)}){' ' + estimate.note if estimate.note else ''}"
        color = PALETTE[row % len(PALETTE)]
        parts.append(
            Markup(
                '<text x="4" y="{ty:.1f}"><title>{label}</title>{short}</text>'
                '<line x1="{low:.1f}" x2="{high:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{color}" '
                'stroke-width="2"/><line x1="{low:.1f}" x2="{low:.1f}" y1="{y0:.1f}" y2="{y1:.1f}" '
                'stroke="{color}" stroke-width="2"/><line x1="{high:.1f}" x2="{high:.1f}" '
                'y1="{y0:.1f}" y2="{y1:.1f}" stroke="{color}" stroke-width="2"/>'
                '<circle class="point" cx="{value:.1f}" cy="{y:.1f}" r="5" fill="{color}" '
                'data-series="{label}" data-y="{raw}" data-low="{raw_low}" data-high="{raw_high}">'
                "<title>{tooltip}</title></circle>"
            ).format(
                ty=y + 4,
                label=estimate.label,
                short=short(estimate.label, 30),
                low=low,
                high=high,
                y=y,
                y0=y - 6,
                y1=y + 6,
                color=color,
                value=value,
                raw=repr(estimate.value),
                raw_low=repr(estimate.low),
                raw_high=repr(estimate.high),
                tooltip=tooltip,
            )
        )
    svg = Markup(
        '<svg class="plot intervals" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'font-size="12" fill="currentColor">{}</svg>'
    ).format(WIDTH, height, title, JOIN.join(parts))
    return figure(title, svg, kind="intervals")
