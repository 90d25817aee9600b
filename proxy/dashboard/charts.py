"""SVG charts as escaped markup: lines and stacked columns over time, with axes, tooltips, legends.

Every label, series name and tooltip is logged data (a model, a user id, a property value) and
goes through markupsafe's escape before it reaches the markup, so a name such as
`<img src=x onerror=alert(1)>` is text. Colours are SVG presentation attributes and the text
uses `currentColor`, so the charts need no inline style (the CSP forbids it) and follow the
page's light or dark theme. Each data point carries `data-series`, `data-x` and `data-y` with
its exact value, for the page's script and the browser tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup

from proxy.dashboard.formats import Format, number

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 12, 40
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
# Each outcome's colour wherever outcomes are drawn: ok green, failures warm or grey.
OUTCOME_COLORS = {
    "ok": "#3fa66b",
    "upstream_error": "#d64f62",
    "timeout": "#e8843a",
    "upstream_unreachable": "#8e6cc9",
    "client_cancelled": "#7a8794",
    "stream_incomplete": "#c9a227",
    "rejected": "#a0674b",
    "rate_limited": "#2fa5b0",
}


@dataclass(frozen=True, slots=True)
class Series:
    """One named line or stack layer: a value (or None: no data) per x category.

    `notes` add a few words to each point's tooltip, e.g. "12 rated".
    """

    name: str
    values: Sequence[float | None]
    notes: Sequence[str] | None = None
    color: str | None = None


def short(label: str, limit: int = LABEL_CHARS) -> str:
    """`label` cut to `limit` characters with an ellipsis (the whole label goes in a title)."""
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


def figure(
    title: str, body: Markup, legend: Sequence[tuple[str, str]] = (), kind: str = ""
) -> Markup:
    """A chart in its frame: caption, drawing, and a legend when there are two series or more."""
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
    return figure(title, Markup('<p class="empty">{}</p>').format(message), kind="empty")


def nice_scale(highest: float, top: float | None = None) -> tuple[float, int]:
    """The axis top and its number of intervals (at most 5), each 1, 2 or 5 times a power of 10.

    A given `top` (1.0 for a rate) is split in four.
    """
    if top is not None:
        return top, 4
    if highest <= 0 or not math.isfinite(highest):
        return 1.0, 4
    raw = highest / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    intervals = max(1, math.ceil(highest / step - 1e-9))
    return step * intervals, intervals


def _y_axis(top: float, intervals: int, tick: Format) -> list[Markup]:
    parts = []
    for i in range(intervals + 1):
        y = TOP + PLOT_H - PLOT_H * i / intervals
        parts.append(
            Markup(
                '<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                'stroke="currentColor" stroke-opacity="0.15"/>'
                '<text x="{tx}" y="{ty:.1f}" text-anchor="end">{label}</text>'
            ).format(
                left=LEFT,
                right=WIDTH - RIGHT,
                y=y,
                tx=LEFT - 6,
                ty=y + 4,
                label=tick(top * i / intervals),
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
                ).format(x, TOP + PLOT_H + 18, label, short(label))
            )
    return parts


def _svg(title: str, parts: Sequence[Markup]) -> Markup:
    return Markup(
        '<svg class="plot" viewBox="0 0 {} {}" role="img" aria-label="{}" font-size="12" '
        'fill="currentColor">{}</svg>'
    ).format(WIDTH, HEIGHT, title, JOIN.join(parts))


POINT = Markup(
    '<{tag} class="point" {shape} fill="{color}" data-series="{series}" data-x="{x}" '
    'data-y="{value}"><title>{tooltip}</title></{tag}>'
)


def _point(
    tag: str,
    shape: Markup,
    color: str,
    s: Series,
    category: tuple[str, str],
    i: int,
    value: float,
    fmt: Format,
) -> Markup:
    """A data point: its shape, exact value, and a tooltip with the category's label."""
    key, label = category
    note = f" ({s.notes[i]})" if s.notes is not None and s.notes[i] else ""
    return POINT.format(
        tag=tag,
        shape=shape,
        color=color,
        series=s.name,
        x=key,
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
    tick: Format | None = None,
    x_label: Callable[[str], str] = str,
) -> Markup:
    """One line per series over the categories (time buckets); a None value breaks the line.

    `fmt` shows values in tooltips, `tick` on the y axis (default `fmt`); `x_label` shows a
    category (the points' `data-x` keep the category itself).
    """
    if not categories or not _has_data(series):
        return empty(title)
    highest = max(v for s in series for v in s.values if v is not None)
    top, intervals = nice_scale(highest, y_max)
    step = PLOT_W / max(1, len(categories) - 1)
    xs = [
        LEFT + PLOT_W / 2 if len(categories) == 1 else LEFT + step * i
        for i in range(len(categories))
    ]
    labels = [x_label(c) for c in categories]
    parts = _y_axis(top, intervals, tick or fmt) + _x_axis(labels, xs)
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
            points.append(
                _point("circle", shape, color, s, (categories[i], labels[i]), i, value, fmt)
            )
        if path:
            parts.append(
                Markup('<path d="{}" fill="none" stroke="{}" stroke-width="2"/>').format(
                    " ".join(path), color
                )
            )
        parts.extend(points)
    legend = [(s.name, c) for s, c in zip(series, colors, strict=True)]
    return figure(title, _svg(title, parts), legend, kind="line")


def column_chart(
    title: str,
    categories: Sequence[str],
    series: Sequence[Series],
    fmt: Format = number,
    tick: Format | None = None,
    x_label: Callable[[str], str] = str,
) -> Markup:
    """Columns per category, the series stacked on one another (one series: plain columns)."""
    if not categories or not _has_data(series):
        return empty(title)
    totals = [sum(s.values[i] or 0.0 for s in series) for i in range(len(categories))]
    top, intervals = nice_scale(max(totals))
    slot = PLOT_W / len(categories)
    width = max(1.0, min(48.0, slot * 0.7))
    centres = [LEFT + slot * (i + 0.5) for i in range(len(categories))]
    labels = [x_label(c) for c in categories]
    parts = _y_axis(top, intervals, tick or fmt) + _x_axis(labels, centres)
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
            parts.append(_point("rect", shape, color, s, (categories[i], labels[i]), i, value, fmt))
    legend = [(s.name, c) for s, c in zip(series, colors, strict=True)]
    return figure(title, _svg(title, parts), legend, kind="columns")


def meter(value: float, highest: float, label: str) -> Markup:
    """A small horizontal bar for a table cell: `value` as a share of `highest`."""
    share = 0.0 if highest <= 0 else max(0.0, min(1.0, value / highest))
    return Markup(
        '<svg class="meter" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
        'aria-label="{label}"><title>{label}</title>'
        '<rect width="100" height="8" fill="currentColor" fill-opacity="0.1"/>'
        '<rect width="{width:.1f}" height="8" fill="{color}"/></svg>'
    ).format(label=label, width=share * 100, color=PALETTE[0])
