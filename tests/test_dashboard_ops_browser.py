"""The operations, sessions and users pages in a real browser (Playwright driving Debian's
headless Chromium) against relaylog with seeded traffic on the sandbox: what a person sees,
where its links lead, and what a session's thumbs-down stores (read back through the API).
Screenshots go to docs/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser import Relaylog, screenshot

pytestmark = pytest.mark.slow


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#rows tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def test_operations_show_the_traffic_and_link_into_the_list(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/operations")
    expect(page.locator("header nav a[aria-current=page]")).to_have_text("Operations")
    expect(page.locator("#fig-requests")).to_have_text(str(len(served.query_ids("all"))))
    expect(page.locator("#charts figure.chart")).to_have_count(5)
    # The seed streams nothing, so only the time to first token has nothing to draw.
    expect(page.locator("#charts figure.chart.empty")).to_have_text(re.compile("only streamed"))
    for kind, points in (("columns", "rect.point"), ("line", "circle.point")):
        expect(page.locator(f"#charts figure.{kind} {points}").first).to_be_visible()
    expect(page.locator("#top-users td.value a")).to_contain_text(["alice", "bob", "carol"])
    expect(page.locator("#top-values h3")).to_have_text("Top values of prompt-version")
    # Counted apart and swapped in by static/operations.js.
    expect(page.locator("#top-values td.value a")).to_have_text(["v1", "v2"])
    expect(page.locator("#values-state")).to_have_count(0)
    screenshot(page, "operations")

    page.locator("#top-models").get_by_role("link", name="gpt-4o", exact=True).click()
    expect(page).to_have_url(re.compile(r"/requests\?model=gpt-4o$"))
    expected = served.query_ids({"request": {"model": {"equals": "gpt-4o"}}})
    assert 0 < len(expected) < len(served.query_ids("all"))
    assert shown_ids(page) == expected


def test_a_session_is_a_tree_and_takes_a_thumbs_down(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/sessions")
    row = page.locator("#sessions tr[data-session='onboarding']")
    expect(row.locator("td.name")).to_have_text("Onboarding")
    expect(row.locator("td.requests")).to_have_text("4")
    screenshot(page, "sessions")

    row.locator("td.name a").click()
    expect(page).to_have_url(re.compile(r"/sessions/onboarding$"))
    tree = page.locator("#session-tree li.request")
    expect(tree).to_have_count(4)
    expect(tree.locator(".segment")).to_have_text(["step0", "step1", "step2", "step3"])
    expect(page.locator("figure.timeline rect.point")).to_have_count(4)
    down = page.locator("#session-feedback button.rate[data-rating=false]")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#session-feedback-state")).to_contain_text("rated down")
    screenshot(page, "session")
    first = served.ids[0]
    assert served.api("GET", f"/v1/request/{first}")["session"]["feedback"]["rating"] is False

    page.reload()
    expect(down).to_have_attribute("aria-pressed", "true")
    tree.first.locator("a.open").click()
    expect(page).to_have_url(re.compile(rf"/requests/{first}\?session=onboarding$"))
    expect(page.locator("#drawer .msg.role-user")).to_contain_text("question 0")


def test_users_sort_and_click_through_to_their_requests(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/users")
    users = page.locator("#users td.user a")
    expect(users).to_have_count(4)
    expect(users.first).to_have_text("alice")  # four requests, the most
    page.click(".sorts a[data-sort=last_seen]")
    expect(page).to_have_url(re.compile(r"/users\?sort=last_seen$"))
    expect(users.first).to_have_text("mallory")
    screenshot(page, "users")

    page.locator("#users td.user a", has_text="bob").click()
    expect(page).to_have_url(re.compile(r"/requests\?user=bob$"))
    expected = served.query_ids({"request": {"user_id": {"equals": "bob"}}})
    assert len(expected) == 3 and shown_ids(page) == expected
    expect(page.locator("input[name=user]")).to_have_value("bob")
