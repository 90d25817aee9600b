"""The dashboard in a real browser (Playwright driving Debian's headless Chromium) against
relaylog with seeded traffic on the sandbox: what a person sees, and what the store then holds
(read back through the API). Screenshots of each view go to docs/screenshots/."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.browser import FEEDBACK_KEY, HOSTILE, KEY, Relaylog, screenshot

pytestmark = pytest.mark.slow


def shown_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator("#rows tr[data-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.id)"
    )
    return ids


def test_the_list_shows_the_seeded_rows_newest_first(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/")
    expect(page).to_have_url(re.compile(r"/requests$"))
    expect(page.locator("#count")).to_have_text(str(len(served.query_ids("all"))))
    assert shown_ids(page) == served.query_ids("all")[:50]
    first = page.locator("#rows tr[data-id]").first
    expect(first.locator("td.model")).to_have_text("gpt-4o-mini")
    expect(first.locator("td.user")).to_have_text("mallory")
    expect(page.locator("header nav a[aria-current=page]")).to_have_text("Requests")

    page.fill("input[name=pcol]", "prompt-version")
    page.fill("input[name=scol]", "accuracy")
    page.click("#filter-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"pcol=prompt-version&scol=accuracy$"))
    expect(page.locator("th.extra")).to_have_text(["prompt-version", "accuracy"])
    oldest = page.locator("#rows tr[data-id]").last
    expect(oldest.locator("td.extra")).to_have_text(["v1", "50"])
    screenshot(page, "requests")


def test_feedback_and_score_filters_narrow_the_list_and_survive_a_reload(
    served: Relaylog, page: Page
) -> None:
    page.goto(served.url + "/requests")
    page.select_option("select[name=feedback]", "down")
    page.fill("input[name=score]", "accuracy>55")
    page.click("#filter-form button[type=submit]")
    expect(page).to_have_url(re.compile(r"feedback=down&score=accuracy%3E55$"))
    tree = {
        "left": {"feedback": {"rating": {"equals": False}}},
        "operator": "and",
        "right": {"scores": {"accuracy": {"gt": 55}}},
    }
    expected = served.query_ids(tree)
    assert 0 < len(expected) < len(served.query_ids("all"))
    assert shown_ids(page) == expected
    expect(page.locator("#count")).to_have_text(str(len(expected)))
    page.reload()
    assert shown_ids(page) == expected
    expect(page.locator("select[name=feedback]")).to_have_value("down")
    expect(page.locator("input[name=score]")).to_have_value("accuracy>55")
    curl = page.locator("#curl").text_content() or ""
    assert "/v1/request/query" in curl and '"accuracy":{"gt":"55"}' in curl
    screenshot(page, "requests-filtered")


def test_the_drawer_shows_the_chat_and_stores_a_rating_and_a_score(
    served: Relaylog, page: Page
) -> None:
    target = served.ids[5]  # question 5, rated up by the seed
    page.goto(served.url + "/requests")
    page.locator(f"#rows tr[data-id='{target}'] td.model").click()
    drawer = page.locator("#drawer")
    expect(drawer).to_be_visible()
    expect(page).to_have_url(re.compile(f"/requests/{target}$"))
    expect(drawer.locator(".msg.role-system")).to_contain_text("Answer in one line.")
    expect(drawer.locator(".msg.role-user")).to_contain_text("question 5: what is 5 + 5?")
    expect(drawer.locator(".answer .msg.role-assistant")).to_contain_text("Echo: question 5")
    screenshot(page, "request-detail")

    drawer.locator("#feedback-comment").fill("wrong sum")
    drawer.locator("button.rate[data-rating=false]").click()
    expect(drawer.locator("button.rate[data-rating=false]")).to_have_attribute(
        "aria-pressed", "true"
    )
    drawer.locator("#score-form input[name=name]").fill("helpfulness")
    drawer.locator("#score-form input[name=value]").fill("0.25")
    drawer.locator("#score-form button").click()
    expect(drawer.locator("#scores")).to_contain_text("helpfulness")
    drawer.locator("#property-form input[name=key]").fill("reviewed_by")
    drawer.locator("#property-form input[name=value]").fill("qa")
    drawer.locator("#property-form button").click()
    expect(drawer.locator("#properties")).to_contain_text("reviewed_by")
    expect(page.locator(f"#rows tr[data-id='{target}'] td.feedback")).to_have_text("▼")

    record = served.api("GET", f"/v1/request/{target}")
    assert record["feedback"]["rating"] is False and record["feedback"]["comment"] == "wrong sum"
    assert record["scores"] == {"accuracy": 75.0, "helpfulness": 0.25}
    assert record["properties"]["reviewed_by"] == "qa"

    page.reload()  # the deep link opens the drawer by itself
    expect(page.locator("#drawer .msg.role-user")).to_contain_text("question 5")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/requests$"))


def test_keys_move_between_requests(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/requests")
    ids = shown_ids(page)
    page.keyboard.press("j")
    expect(page.locator("#rows tr.current")).to_have_attribute("data-id", ids[0])
    page.keyboard.press("ArrowDown")
    page.keyboard.press("j")
    expect(page.locator("#rows tr.current")).to_have_attribute("data-id", ids[2])
    page.keyboard.press("Enter")
    expect(page.locator("#detail")).to_have_attribute("data-id", ids[2])
    page.keyboard.press("k")
    expect(page.locator("#detail")).to_have_attribute("data-id", ids[1])
    page.keyboard.press("ArrowUp")
    expect(page.locator("#detail")).to_have_attribute("data-id", ids[0])
    expect(page).to_have_url(re.compile(f"/requests/{ids[0]}$"))
    page.keyboard.press("Escape")
    expect(page.locator("#drawer")).to_be_hidden()
    page.keyboard.press("?")
    expect(page.locator("#keys-help")).to_be_visible()
    expect(page.locator("#keys-help")).to_contain_text("next request")
    page.keyboard.press("Escape")
    expect(page.locator("#keys-help")).to_be_hidden()


def test_a_dataset_made_from_the_filter_exports_its_rows(
    served: Relaylog, page: Page, tmp_path: Path
) -> None:
    page.goto(served.url + "/requests?feedback=up&model=gpt-4o-mini")
    expected = served.query_ids(
        {
            "left": {"feedback": {"rating": {"equals": True}}},
            "operator": "and",
            "right": {"request": {"model": {"equals": "gpt-4o-mini"}}},
        }
    )
    assert shown_ids(page) == expected
    page.fill("#dataset-name", "liked-mini")
    page.click("#add-matching")
    expect(page.locator("#notice")).to_contain_text(f"{len(expected)} rows in all")

    picked = expected[:2]
    for request_id in picked:
        page.locator(f"#rows tr[data-id='{request_id}'] input.select").check()
    page.fill("#dataset-name", "picked")
    page.click("#add-selected")
    expect(page.locator("#notice")).to_contain_text("Dataset picked: 2 added, 2 rows in all")
    assert sorted(served.query_ids({"dataset": {"name": {"equals": "picked"}}})) == sorted(picked)

    page.goto(served.url + "/datasets")
    row = page.locator("#datasets tr[data-name='liked-mini']")
    expect(row.locator("td.num")).to_have_text(str(len(expected)))
    screenshot(page, "datasets")
    for fmt in ("jsonl", "openai-chat", "csv"):
        with page.expect_download() as download:
            row.get_by_role("link", name=fmt, exact=True).click()
        saved = tmp_path / f"export.{fmt}"
        download.value.save_as(saved)
        text = saved.read_text()
        if fmt == "jsonl":
            assert sorted(orjson.loads(line)["id"] for line in text.splitlines()) == sorted(
                expected
            )
        elif fmt == "csv":
            assert all(request_id in text for request_id in expected)
            assert len(text.strip().splitlines()) == len(expected) + 1
        else:
            examples = [orjson.loads(line) for line in text.splitlines()]
            assert len(examples) == len(expected)
            assert all(e["messages"][-1]["role"] == "assistant" for e in examples)

    page.on("dialog", lambda dialog: dialog.accept())  # "Delete the dataset picked?"
    page.locator("#datasets tr[data-name='picked'] button.delete-dataset").click()
    expect(page.locator("#datasets tr[data-name='picked']")).to_have_count(0)
    listed = served.api("POST", "/v1/helicone-dataset/query", {})
    assert "picked" not in [d["name"] for d in listed]

    page.goto(served.url + "/requests?dataset=liked-mini")
    assert shown_ids(page) == expected
    page.locator(f"#rows tr[data-id='{expected[0]}'] input.select").check()
    page.click("#remove-selected")
    expect(page.locator("#notice")).to_contain_text(f"{len(expected) - 1} rows left")
    listed = served.api("POST", "/v1/helicone-dataset/query", {})
    assert [d["requests_count"] for d in listed if d["name"] == "liked-mini"] == [len(expected) - 1]


def test_script_in_a_prompt_stays_text(served: Relaylog, page: Page) -> None:
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    page.goto(served.url + "/requests?user=mallory")
    assert len(shown_ids(page)) == len(HOSTILE)
    for request_id, text in zip(served.ids[-2:], HOSTILE, strict=True):
        previews = page.locator(f"#rows tr[data-id='{request_id}'] td.preview")
        expect(previews).to_have_text([text, f"Echo: {text}"])
    for request_id, text in zip(served.ids[-2:], HOSTILE, strict=True):
        page.goto(f"{served.url}/requests/{quote(request_id)}?user=mallory")
        expect(page.locator("#drawer .msg.role-user .text")).to_have_text(text)
        expect(page.locator("#drawer .answer .text")).to_have_text(f"Echo: {text}")
        page.keyboard.press("Escape")
    assert page.locator("main img").count() == 0
    assert dialogs == []


def test_the_live_tail_adds_new_rows(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/requests?user=tailed")
    assert shown_ids(page) == []
    expect(page.locator("#count")).to_have_text("0")
    page.check("#tail")
    first = served.chat("first tailed question", user="tailed")
    expect(page.locator(f"#rows tr[data-id='{first}']")).to_be_visible()
    expect(page.locator(".toolbar .count")).to_have_text("1 request")
    second = served.chat("second tailed question", user="tailed")
    served.chat("not for this filter", user="someone-else")
    expect(page.locator(f"#rows tr[data-id='{second}']")).to_be_visible()
    assert shown_ids(page) == [second, first]
    expect(page.locator(".toolbar .count")).to_have_text("2 requests")


def test_the_theme_toggle_is_remembered(served: Relaylog, page: Page) -> None:
    page.goto(served.url + "/requests")
    background = "getComputedStyle(document.documentElement).backgroundColor"
    light = page.evaluate(background)
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert page.evaluate(background) != light


def test_keys_ask_for_a_key_before_showing_anything(
    keyed: Relaylog, page: Page, tmp_path: Path
) -> None:
    page.goto(keyed.url + "/requests")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    expect(page.locator("input[name=key]")).to_be_visible()
    assert page.locator("#rows").count() == 0
    screenshot(page, "login")
    page.fill("input[name=key]", FEEDBACK_KEY)
    page.click("form[action='/login'] button")
    expect(page.locator(".problem-text")).to_contain_text("feedback-only")
    page.fill("input[name=key]", KEY)
    page.click("form[action='/login'] button")
    expect(page).to_have_url(re.compile(r"/requests$"))
    assert shown_ids(page) == keyed.query_ids("all")
    cookie = next(c for c in page.context.cookies() if c["name"] == "relaylog_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""

    target = keyed.ids[3]  # not rated by the seed
    page.locator(f"#rows tr[data-id='{target}'] td.model").click()
    page.locator("#drawer button.rate[data-rating=true]").click()
    expect(page.locator("#drawer button.rate[data-rating=true]")).to_have_attribute(
        "aria-pressed", "true"
    )
    assert keyed.api("GET", f"/v1/request/{target}")["feedback"]["rating"] is True

    # A download link is a same-origin navigation: the cookie is the key.
    with page.expect_download() as download:
        page.evaluate(
            """() => { const a = document.createElement("a");
                       a.href = "/v1/export?format=jsonl&user=mallory"; a.download = "";
                       document.body.appendChild(a); a.click(); }"""
        )
    saved = tmp_path / "mallory.jsonl"
    download.value.save_as(saved)
    assert [orjson.loads(line)["user_id"] for line in saved.read_text().splitlines()] == [
        "mallory",
        "mallory",
    ]
