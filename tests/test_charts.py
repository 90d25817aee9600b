"""proxy.dashboard.charts: SVG lines and columns, their axes, tooltips, legends and escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from proxy.dashboard.charts import (
    EMPTY,
    HEIGHT,
    PLOT_H,
    TOP,
    Series,
    column_chart,
    line_chart,
    meter,
    nice_max,
    nice_scale,
)
from proxy.dashboard.formats import Format, ms, number, percent

HOSTILE = "<img src=x onerror=alert(1)>"
SCRIPT = '</script><script>alert("x")</script>'


def parse(markup: str) -> ET.Element:
    """The chart as an element tree: it must be well-formed markup."""
    return ET.fromstring(markup)


def points(figure: ET.Element) -> list[ET.Element]:
    return [e for e in figure.iter() if e.get("class") == "point"]


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (0.7, 1), (1, 1), (1.2, 2), (2.1, 2.5), (3, 5), (7, 10), (42, 50), (0.031, 0.05)],
)
def test_nice_max(value: float, top: float) -> None:
    assert nice_max(value) == pytest.approx(top)


@pytest.mark.parametrize(
    ("highest", "top", "intervals"),
    [(0, 1, 4), (3, 3, 3), (8, 8, 4), (50, 60, 3), (0.031, 0.04, 4), (1234, 1500, 3)],
)
def test_nice_scale_steps_by_one_two_or_five(highest: float, top: float, intervals: int) -> None:
    found_top, found_intervals = nice_scale(highest)
    assert found_top == pytest.approx(top) and found_intervals == intervals
    assert nice_scale(highest, top=1.0) == (1.0, 4)


def test_categories_can_be_shown_with_other_labels() -> None:
    chart = line_chart(
        "t", ["2024-05-01T10"], [Series("s", [2])], x_label=lambda key: key[5:10] + " 10:00"
    )
    figure = parse(chart)
    [point] = points(figure)
    assert point.get("data-x") == "2024-05-01T10"
    assert point.findtext("title") == "s · 05-01 10:00: 2"
    assert "05-01 10:00" in [e.findtext("title") for e in figure.iter() if e.tag == "text"]


def test_line_chart_points_carry_exact_values_and_tooltips() -> None:
    chart = line_chart(
        "Positive rate",
        ["2024-05-01", "2024-05-02", "2024-05-03"],
        [Series("gpt-4o", [0.5, 0.75, 1.0], notes=["2 rated", "4 rated", "1 rated"])],
        fmt=percent,
        y_max=1.0,
    )
    figure = parse(chart)
    found = points(figure)
    assert [(p.get("data-x"), p.get("data-y")) for p in found] == [
        ("2024-05-01", "0.5"),
        ("2024-05-02", "0.75"),
        ("2024-05-03", "1.0"),
    ]
    titles = [p.findtext("title") for p in found]
    assert titles[1] == "gpt-4o · 2024-05-02: 75.0% (4 rated)"
    # y grows upwards: the value 1.0 sits on the top of the plot, 0.5 half-way.
    assert float(found[2].get("cy", "")) == pytest.approx(TOP)
    assert float(found[0].get("cy", "")) == pytest.approx(TOP + PLOT_H / 2)
    assert figure.findtext("figcaption") == "Positive rate"
    assert figure.find("ul") is None, "one series needs no legend"


def test_a_missing_value_breaks_the_line() -> None:
    chart = line_chart("r", ["a", "b", "c", "d"], [Series("s", [1.0, None, 2.0, 3.0])])
    path = next(e for e in parse(chart).iter() if e.tag == "path")
    assert path.get("d", "").count("M") == 2
    assert len(points(parse(chart))) == 3


def test_several_series_get_a_legend_and_distinct_colours() -> None:
    chart = line_chart("r", ["a", "b"], [Series("v1", [1, 2]), Series("v2", [2, None])])
    figure = parse(chart)
    legend = figure.find("ul")
    assert legend is not None and [li.text or "".join(li.itertext()) for li in legend] == [
        "v1",
        "v2",
    ]
    colours = {p.get("fill") for p in points(figure)}
    assert len(colours) == 2


@pytest.mark.parametrize(
    "chart",
    [
        line_chart("t", [], []),
        line_chart("t", ["a", "b"], [Series("s", [None, None])]),
        column_chart("t", ["a"], [Series("s", [None])]),
    ],
)
def test_nothing_to_draw_shows_the_empty_state(chart: str) -> None:
    figure = parse(chart)
    assert "empty" in (figure.get("class") or "")
    assert figure.findtext("p") == EMPTY
    assert figure.find(".//svg") is None


def test_columns_stack_series_per_category() -> None:
    chart = column_chart(
        "Requests by outcome",
        ["10:00", "11:00"],
        [Series("ok", [6, 2]), Series("upstream_error", [2, None])],
    )
    rects = points(parse(chart))
    assert [(r.get("data-series"), r.get("data-x"), r.get("data-y")) for r in rects] == [
        ("ok", "10:00", "6"),
        ("ok", "11:00", "2"),
        ("upstream_error", "10:00", "2"),
    ]
    ok, _, error = ((float(r.get("y", "")), float(r.get("height", ""))) for r in rects)
    # The axis tops at 8 (four steps of 2) for a highest stack of 8: heights in proportion,
    # the error on top.
    assert ok[1] == pytest.approx(PLOT_H * 0.75)
    assert error[1] == pytest.approx(PLOT_H * 0.25)
    assert error[0] + error[1] == pytest.approx(ok[0])
    assert ok[0] + ok[1] == pytest.approx(TOP + PLOT_H)
    assert float(parse(chart).find(".//svg").get("viewBox", "").split()[3]) == HEIGHT  # type: ignore[union-attr]


@pytest.mark.parametrize("hostile", [HOSTILE, SCRIPT])
def test_every_logged_string_is_escaped(hostile: str) -> None:
    charts = [
        line_chart(hostile, [hostile, "b"], [Series(hostile, [1, 2], notes=[hostile, ""])]),
        column_chart(hostile, [hostile], [Series(hostile, [3]), Series("x", [1])]),
        meter(1, 2, hostile),
    ]
    for chart in charts:
        assert "<img" not in chart and "<script" not in chart
        tree = parse(chart)
        assert {e.tag for e in tree.iter()} <= {
            "figure",
            "figcaption",
            "svg",
            "line",
            "text",
            "title",
            "path",
            "circle",
            "rect",
            "ul",
            "li",
            "p",
            "a",
        }
        texts = " ".join(tree.itertext()) + " ".join(
            value for e in tree.iter() for value in e.attrib.values()
        )
        assert hostile in texts, "the text itself survives, as text"


def test_long_labels_are_shortened_with_the_whole_label_in_a_tooltip() -> None:
    label = "prompt-version-" + "x" * 40
    figure = parse(line_chart("t", [label], [Series("s", [1])]))
    text = next(e for e in figure.iter() if e.tag == "text" and e.findtext("title") == label)
    assert text.findtext("title") == label
    assert (text.text or "") == "" and "…" in "".join(text.itertext())


def test_meter_is_a_share_clamped_to_the_cell() -> None:
    assert 'width="25.0"' in meter(1, 4, "1 of 4")
    assert 'width="100.0"' in meter(9, 4, "more")
    assert 'width="0.0"' in meter(1, 0, "no maximum")


@pytest.mark.parametrize(
    ("values", "fmt"),
    [([0.3, 1.1, 2.0], ms), ([0.04, 0.18], ms), ([0.5, 1.9], number), ([45, 92.5], number)],
)
def test_small_values_get_distinct_axis_labels(values: list[float], fmt: Format) -> None:
    """A sub-millisecond TTFT axis read "0 ms, 0 ms, 1 ms, 2 ms, 2 ms" when ms rounded to whole
    milliseconds: every tick of the y axis must read differently."""
    chart = parse(line_chart("t", [str(n) for n in range(len(values))], [Series("s", values)],
                             fmt=fmt))  # fmt: skip
    ticks = [e.text for e in chart.iter() if e.tag == "text" and e.get("text-anchor") == "end"]
    assert len(ticks) >= 3
    assert len(set(ticks)) == len(ticks), ticks
