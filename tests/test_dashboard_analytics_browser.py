"""The analytics page in a real browser (Playwright driving Debian's headless Chromium) against
relaylog on the sandbox: the charts' points and the comparison's rates against POST
/v1/request/stats, the page's state in the URL across a reload, and its screenshots."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser import HOSTILE, Relaylog, screenshot

pytestmark = pytest.mark.slow

# Two more prompt versions on top of the shared seed, rated enough for a verdict.
RATED = {"v3": (36, 12), "v4": (36, 31)}


@pytest.fixture(scope="module")
def rated(served: Relaylog) -> Iterator[Relaylog]:
    """The seeded relaylog plus 72 rated chats over prompt versions v3 (12 of 36 rated up)
    and v4 (31 of 36), by six users."""
    items = []
    for version, (count, positive) in RATED.items():
        for n in range(count):
            request_id = served.chat(
                f"{version} question {n}",
                user=f"user-{n % 6}",
                properties={"prompt-version": version},
            )
            items.append({"request_id": request_id, "rating": n < positive})
    served.api("POST", "/v1/feedback/batch", {"items": items})
    yield served


def stats(relaylog: Relaylog, group_by: list[str]) -> Any:
    return relaylog.api("POST", "/v1/request/stats", {"filter": "all", "group_by": group_by})


def chart_points(page: Page, selector: str) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = page.locator(selector).evaluate_all(
        "points => points.map(p => [p.dataset.series, Number(p.dataset.y)])"
    )
    return [(series, value) for series, value in found]


def per_series(page: Page) -> dict[str, tuple[float, float]]:
    """(rated, positive) per series, from the rate lines and the rated columns together."""
    rates = chart_points(page, "#over-time figure.line .point")
    counts = chart_points(page, "#over-time figure.columns .point")
    assert len(rates) == len(counts) > 0
    totals: dict[str, tuple[float, float]] = {}
    for (series, rate), (same, rated) in zip(rates, counts, strict=True):
        assert series == same
        seen_rated, seen_positive = totals.get(series, (0.0, 0.0))
        totals[series] = (seen_rated + rated, seen_positive + rate * rated)
    return totals


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def test_the_charts_match_the_stats_api(rated: Relaylog, page: Page) -> None:
    page.goto(rated.url + "/analytics")
    expect(page.locator("header nav a[aria-current=page]")).to_have_text("Analytics")
    totals = stats(rated, [])["feedback"]
    expect(page.locator("#fig-rate")).to_contain_text(percent(totals["positive_rate"]))
    expect(page.locator("#fig-rated")).to_contain_text(str(totals["count"]))
    [(rated_count, positive)] = per_series(page).values()
    assert rated_count == totals["count"]
    assert positive == pytest.approx(totals["positive"])

    page.select_option("#split", "model")
    page.click("#filter-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"/analytics\?split=model$"))
    by_model = {
        g["key"]["model"]: (g["feedback"]["count"], g["feedback"]["positive"])
        for g in stats(rated, ["model"])["groups"]
    }
    shown = per_series(page)
    assert {name: rated_count for name, (rated_count, _) in shown.items()} == {
        name: count for name, (count, _) in by_model.items()
    }
    for name, (_, positive) in shown.items():
        assert positive == pytest.approx(by_model[name][1])
    legend = page.locator("#over-time figure.line ul.legend li").all_text_contents()
    assert sorted(legend) == sorted(by_model)
    # The hostile prompts rated down are text in the list of negatives, each a link to its drawer.
    page.goto(rated.url + "/analytics?user=mallory")
    negatives = page.locator("#negatives")
    for text in HOSTILE:
        expect(negatives).to_contain_text(text)
    expect(negatives.locator("img")).to_have_count(0)
    target = negatives.locator("tbody tr").first
    request_id = target.get_attribute("data-id")
    target.locator("td.time a").click()
    expect(page).to_have_url(re.compile(f"/requests/{request_id}\\?user=mallory$"))
    expect(page.locator("#detail")).to_have_attribute("data-id", str(request_id))
    expect(page.locator("#drawer .msg.role-user")).to_contain_text("alert(")


def test_two_prompt_versions_compared_and_the_url_survives_a_reload(
    rated: Relaylog, page: Page
) -> None:
    page.goto(rated.url + "/analytics?since=24h")
    page.select_option("#split", "property:prompt-version")
    page.click("#filter-form button[type=submit]")
    page.select_option("#cmp-by", "property:prompt-version")
    page.fill("#cmp-a", "v3")
    page.fill("#cmp-b", "v4")
    page.click("#compare-groups button[type=submit]")
    expect(page).to_have_url(
        re.compile(
            r"since=24h&split=property%3Aprompt-version&cmp=groups"
            r"&cmp_by=property%3Aprompt-version&cmp_a=v3&cmp_b=v4$"
        )
    )
    versions = {
        g["key"]["property:prompt-version"]: g["feedback"]
        for g in stats(rated, ["property:prompt-version"])["groups"]
    }
    assert (versions["v3"]["count"], versions["v4"]["positive"]) == (36, 31)

    def check() -> None:
        expect(page.locator("#verdict")).to_have_text("better")
        table = page.locator("#compare-table")
        for role, version in (("A", "v3"), ("B", "v4")):
            row = table.locator(f"tr[data-role={role}]")
            expect(row.locator("td.rate")).to_have_text(percent(versions[version]["positive_rate"]))
            expect(row.locator("td.label")).to_have_text(f"property prompt-version = {version}")
        shown = dict(chart_points(page, "#compare figure.intervals .point"))
        assert shown == pytest.approx(
            {
                f"property prompt-version = {version}": versions[version]["positive_rate"]
                for version in ("v3", "v4")
            },
            abs=1e-6,
        )
        expect(page.locator("#sentence")).to_contain_text(
            "property prompt-version = v4 is better than property prompt-version = v3"
        )
        expect(page.locator("#split")).to_have_value("property:prompt-version")
        expect(page.locator("#f-since")).to_have_value("24h")
        expect(page.locator("#cmp-a")).to_have_value("v3")

    check()
    screenshot(page, "analytics")
    page.locator("#compare").scroll_into_view_if_needed()
    screenshot(page, "analytics-compare")
    page.reload()
    check()

    page.fill("#cmp-a", "v1")
    page.fill("#cmp-b", "v2")
    page.click("#compare-groups button[type=submit]")
    expect(page.locator("#verdict")).to_have_text("not enough data")
    expect(page.locator("#sentence")).to_contain_text("at least 30 rated in each group")
