"""SVG charts as escaped markup: lines, columns and stacked columns with axes, tooltips, legends.

Every label, series name and tooltip is logged data (a model, a user id, a property value) and
goes through markupsafe's escape before it reaches the markup, so a name such as
`<img src=x onerror=alert(1)>` is text. Colours are SVG presentation attributes and the text
uses `currentColor`, so the charts need no inline style (the CSP forbids it) and follow the
page's light or dark theme. Each data point carries `data-series`, `data-x` and `data-y` with
its exact value, for the page's script and the browser tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from proxy.dashboard.formats import Format, ms, number, percent

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 40
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
MAX_X_LABELS = 8
LABEL_CHARS = 18
EMPTY = "No data for this filter and time range."
# Distinct hues that read on a white and on a near-black background alike.
PALETTE = (
    "#3b7dd8",
    "#e8843a",
    "#3fa66b",
    "#d64f62",
    "#8e6cc9",
    "#2fa5b0",
    "#c9a227",
    "#a0674b",
    "#7a8794",
)


@dataclass(frozen=True, slots=True)
class Series:
    """One named line or stack layer: a value (or None: no data) per x category.

    `notes` add a few words to each point's tooltip, e.g. "12 rated".
    """

    name: str
    values: Sequence[float | None]
    notes: Sequence[str] | None = None
    color: str | None = None


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def nice_max(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    raise AssertionError("unreachable: 10 * power exceeds value")


JOIN = Markup("")
SWATCH = Markup(
    '<li><svg width="10" height="10" aria-hidden="true">'
    '<rect width="10" height="10" fill="{}"/></svg>{}</li>'
)


def _figure(
    title: str, body: Markup, legend: Sequence[tuple[str, str]] = (), kind: str = ""
) -> Markup:
    legend_html = (
        Markup('<ul class="legend">{}</ul>').format(
            JOIN.join(SWATCH.format(color, name) for name, color in legend)
        )
        if len(legend) > 1
        else JOIN
    )
    return Markup('<figure class="chart {}"><figcaption>{}</figcaption>{}{}</figure>').format(
        kind, title, body, legend_html
    )


def empty(title: str, message: str = EMPTY) -> Markup:
    """The chart's place when there is nothing to draw."""
    return _figure(title, Markup('<p class="empty">{}</p>').format(message), kind="empty")


def _y_axis(top: float, fmt: Format) -> list[Markup]:
    parts = []
    for i in range(5):
        y = TOP + PLOT_H - PLOT_H * i / 4
        parts.append(
            Markup(
                '<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="currentColor" stroke-opacity="0.15"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(
                left=LEFT, right=WIDTH - RIGHT, y=y, tx=LEFT - 6, ty=y + 4, label=fmt(top * i / 4)
            )
        )
    return parts


def _x_axis(categories: Sequence[str], centres: Sequence[float]) -> list[Markup]:
    every = max(1, math.ceil(len(categories) / MAX_X_LABELS))
    parts = [
        Markup(
            '<line x1="{}" x2="{}" y1="{y}" y2="{y}" stroke="currentColor" stroke-opacity="0.5"/>'
        ).format(LEFT, WIDTH - RIGHT, y=TOP + PLOT_H)
    ]
    for i, (label, x) in enumerate(zip(categories, centres, strict=True)):
        if i % every == 0:
            parts.append(
                Markup(
                    '<text x="{:.1f}" y="{}" text-anchor="middle"><title>{}</title>{}</text>'
                ).format(x, TOP + PLOT_H + 18, label, _short(label))
            )
    return parts


def _svg(title: str, parts: Sequence[Markup]) -> Markup:
    return Markup(
        '<svg class="plot" viewBox="0 0 {} {}" role="img" aria-label="{}" font-size="11" '
        'fill="currentColor">{}</svg>'
    ).format(WIDTH, HEIGHT, title, JOIN.join(parts))


POINT = Markup(
    '<{tag} class="point" {shape} fill="{color}" data-series="{series}" data-x="{x}" '
    'data-y="{value}"><title>{tooltip}</title></{tag}>'
)


def _point(
    tag: str, shape: Markup, color: str, s: Series, label: str, i: int, value: float, fmt: Format
) -> Markup:
    note = f" ({s.notes[i]})" if s.notes is not None and s.notes[i] else ""
    return POINT.format(
        tag=tag,
        shape=shape,
        color=color,
        series=s.name,
        x=label,
        value=repr(value),
        tooltip=f"{s.name} · {label}: {fmt(value)}{note}",
    )


def _colors(series: Sequence[Series]) -> list[str]:
    return [s.color or PALETTE[i % len(PALETTE)] for i, s in enumerate(series)]


def _has_data(series: Sequence[Series]) -> bool:
    return any(v is not None for s in series for v in s.values)


def line_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Format = number,
    y_max: float | None = None,
) -> Markup:
    """One line per series over the categories (time buckets); a None value breaks the line."""
    if not categories or not _has_data(series):
        return empty(title)
    highest = max(v for s in series for v in s.values if v is not None)
    top = y_max if y_max is not None else nice_max(highest)
    step = PLOT_W / max(1, len(categories) - 1)
    xs = [
        LEFT + PLOT_W / 2 if len(categories) == 1 else LEFT + step * i
        for i in range(len(categories))
    ]
    parts = _y_axis(top, fmt) + _x_axis(categories, xs)
    colors = _colors(series)
    for s, color in zip(series, colors, strict=True):
        path, pen_down, points = [], False, []
        for i, value in enumerate(s.values):
            if value is None:
                pen_down = False
                continue
            y = TOP + PLOT_H - PLOT_H * min(value, top) / top
            path.append(f"{'L' if pen_down else 'M'}{xs[i]:.1f} {y:.1f}")
            pen_down = True
            shape = Markup('cx="{:.1f}" cy="{:.1f}" r="3.5"').format(xs[i], y)
            points.append(_point("circle", shape, color, s, categories[i], i, value, fmt))
        if path:
            parts.append(
                Markup('<path d="{}" fill="none" stroke="{}" stroke-width="2"/>').format(
                    " ".join(path), color
                )
            )
        parts.extend(points)
    legend = [(s.name, c) for s, c in zip(series, colors, strict=True)]
    return _figure(title, _svg(title, parts), legend, kind="line")


def column_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Format = number,
) -> Markup:
    """Columns per category, the series stacked on one another (one series: plain columns)."""
    if not categories or not _has_data(series):
        return empty(title)
    totals = [sum(s.values[i] or 0.0 for s in series) for i in range(len(categories))]
    top = nice_max(max(totals))
    slot = PLOT_W / len(categories)
    width = max(1.0, min(48.0, slot * 0.7))
    centres = [LEFT + slot * (i + 0.5) for i in range(len(categories))]
    parts = _y_axis(top, fmt) + _x_axis(categories, centres)
    colors = _colors(series)
    bases = [0.0] * len(categories)
    for s, color in zip(series, colors, strict=True):
        for i, value in enumerate(s.values):
            if not value:
                continue
            height = PLOT_H * value / top
            y = TOP + PLOT_H - PLOT_H * bases[i] / top - height
            bases[i] += value
            shape = Markup('x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"').format(
                centres[i] - width / 2, y, width, height
            )
            parts.append(_point("rect", shape, color, s, categories[i], i, value, fmt))
    legend = [(s.name, c) for s, c in zip(series, colors, strict=True)]
    return _figure(title, _svg(title, parts), legend, kind="columns")


def meter(value: float, highest: float, label: str) -> Markup:
    """A small horizontal bar for a table cell: `value` as a share of `highest`."""
    share = 0.0 if highest <= 0 else max(0.0, min(1.0, value / highest))
    return Markup(
        '<svg class="meter" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
        'aria-label="{label}"><title>{label}</title>'
        '<rect width="100" height="8" fill="currentColor" fill-opacity="0.1"/>'
        '<rect width="{width:.1f}" height="8" fill="{color}"/></svg>'
    ).format(label=label, width=share * 100, color=PALETTE[0])


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
    """Five vertical grid lines right of the label column, labelled with `label(share)`."""
    return [
        Markup(
            '<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="currentColor" '
            'stroke-opacity="0.15"/><text x="{x:.1f}" y="{ty}" text-anchor="middle">{label}</text>'
        ).format(
            x=LABEL_W + (WIDTH - LABEL_W - RIGHT) * i / 4,
            top=TOP,
            bottom=height - BOTTOM,
            ty=height - BOTTOM + 18,
            label=label(i / 4),
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
                _short(span.label, 30 - 2 * min(span.depth, 8)),
                shape,
            )
        )
    svg = Markup(
        '<svg class="plot timeline" viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'font-size="11" fill="currentColor">{}</svg>'
    ).format(WIDTH, height, title, JOIN.join(parts))
    return _figure(title, svg, kind="timeline")


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
                short=_short(estimate.label, 30),
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
        'font-size="11" fill="currentColor">{}</svg>'
    ).format(WIDTH, height, title, JOIN.join(parts))
    return _figure(title, svg, kind="intervals")
