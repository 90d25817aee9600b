"""proxy.dashboard.ranges: a session's timeline and rates with their intervals, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from proxy.dashboard.charts import RIGHT, WIDTH
from proxy.dashboard.ranges import LABEL_W, Estimate, Span, interval_chart, timeline

HOSTILE = "<img src=x onerror=alert(1)>"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def points(figure: ET.Element) -> list[ET.Element]:
    return [e for e in figure.iter() if e.get("class") == "point"]


@pytest.mark.parametrize(
    "chart",
    [
        timeline(HOSTILE, [Span(HOSTILE, 0, 10, HOSTILE, href=f"/x?{HOSTILE}")]),
        interval_chart(HOSTILE, [Estimate(HOSTILE, 0.5, 0.4, 0.6, note=HOSTILE)]),
    ],
)
def test_every_label_is_escaped(chart: str) -> None:
    assert "<img" not in chart
    tree = parse(chart)
    assert "img" not in {e.tag for e in tree.iter()}
    texts = " ".join(tree.itertext()) + " ".join(v for e in tree.iter() for v in e.attrib.values())
    assert HOSTILE in texts


def test_timeline_places_each_span_on_one_time_axis() -> None:
    spans = [
        Span("/plan", 0, 400, "plan: 400 ms"),
        Span("/plan/search", 400, 200, "search: 200 ms", depth=1, href="/r?id=a&b=1"),
        Span("/answer", 700, 300, "answer", color="#d64f62"),
    ]
    figure = parse(timeline("Session", spans))
    bars = points(figure)
    assert [(b.get("data-x"), b.get("data-y")) for b in bars] == [
        ("/plan", "400"),
        ("/plan/search", "200"),
        ("/answer", "300"),
    ]
    # The axis ends at 1,000 ms (the last span's end): x and width in proportion to it.
    plot = WIDTH - LABEL_W - RIGHT
    x, width = (float(bars[1].get(k, "")) for k in ("x", "width"))
    assert x == pytest.approx(LABEL_W + plot * 0.4, abs=0.1)
    assert width == pytest.approx(plot * 0.2, abs=0.1)
    assert bars[2].get("fill") == "#d64f62"
    links = [e for e in figure.iter() if e.tag == "a"]
    assert [a.get("href") for a in links] == ["/r?id=a&b=1"]
    labels = [e for e in figure.iter() if e.tag == "text" and e.findtext("title") == "/plan/search"]
    assert float(labels[0].get("x", "")) > float(
        next(e for e in figure.iter() if e.tag == "text" and e.findtext("title") == "/plan").get(
            "x", ""
        )
    ), "a child's label is indented"


def test_an_empty_timeline_says_so() -> None:
    assert parse(timeline("Session", [])).findtext("p") == "No requests in this session."


def test_interval_chart_draws_each_rate_with_its_whiskers() -> None:
    figure = parse(
        interval_chart(
            "Positive rate, 95% CI",
            [Estimate("v1", 0.6, 0.49, 0.70, "80 rated"), Estimate("v2", 0.8, 0.69, 0.88)],
        )
    )
    dots = points(figure)
    assert [(d.get("data-series"), d.get("data-y"), d.get("data-low")) for d in dots] == [
        ("v1", "0.6", "0.49"),
        ("v2", "0.8", "0.69"),
    ]
    plot = WIDTH - LABEL_W - RIGHT
    assert float(dots[1].get("cx", "")) == pytest.approx(LABEL_W + plot * 0.8, abs=0.1)
    assert dots[0].findtext("title") == "v1: 60.0% (95% CI 49.0% to 70.0%) 80 rated"
    whiskers = [
        e for e in figure.iter() if e.tag == "line" and e.get("stroke") == dots[0].get("fill")
    ]
    assert sorted({float(e.get("x1", "")) for e in whiskers}) == pytest.approx(
        [LABEL_W + plot * 0.49, LABEL_W + plot * 0.70], abs=0.1
    )


def test_the_axis_labels_stay_inside_the_chart() -> None:
    """The last label ("100.0%") ends at the right edge's grid line instead of being centred on
    it, which put half of it outside the drawing; the others are centred on theirs."""
    chart = parse(interval_chart("rates", [Estimate("a", 0.5, 0.4, 0.6)]))
    labels = [e for e in chart.iter() if e.tag.endswith("text") and e.get("text-anchor")]
    assert [e.text for e in labels] == ["0.0%", "25.0%", "50.0%", "75.0%", "100.0%"]
    assert [e.get("text-anchor") for e in labels] == ["middle"] * 4 + ["end"]
    assert float(labels[-1].get("x", "")) == WIDTH - RIGHT
    assert float(labels[0].get("x", "")) == LABEL_W
