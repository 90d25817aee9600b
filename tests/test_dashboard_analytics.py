"""The analytics page over HTTP: traffic and feedback sent through relaylog's own API on the
sandbox, then the page's figures, charts, scores and negatives read against POST
/v1/request/stats for the same filter; its parameters, empty states, escaping and time limit."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from html import unescape
from typing import Any

import pytest

from proxy.dashboard.analytics import by_day
from proxy.state import STORE
from storage import Row, open_store
from storage.models import utc_iso
from storage.query.analytics import rated_split
from storage.query.filters import ALL
from tests.helpers import Client, ProxyFactory
from tests.logbook import fill

HOSTILE = "<img src=x onerror=alert(1)>"
POINT = re.compile(r'<(circle|rect) class="point"[^>]* data-series="([^"]*)" data-x="([^"]*)" '
                   r'data-y="([^"]*)"')  # fmt: skip
FIGURE = re.compile(r'<dd id="fig-(\w+)" data-value="([^"]*)">')


@dataclass(frozen=True)
class Call:
    """One chat through relaylog and what is then said about it."""

    model: str
    rating: bool | None
    user: str
    version: str
    variant: str = "plain"
    comment: str | None = None
    accuracy: float | None = None


def traffic() -> list[Call]:
    """gpt-4o (prompt v2) rated up 31 times of 35, gpt-4o-mini (v1) 10 of 35; ten users; a
    hostile property value on a few; five unrated calls; accuracy scores on some."""
    calls = []
    for n in range(35):
        calls.append(Call("gpt-4o", n >= 4, f"u{n % 10}", "v2", accuracy=float(60 + n)))
        calls.append(
            Call(
                "gpt-4o-mini",
                n < 10,
                f"u{n % 10}",
                "v1",
                variant=HOSTILE if n % 7 == 0 else "plain",
                comment=f"wrong answer {n}" if n >= 30 else None,
            )
        )
    calls += [Call("gpt-4o-mini", None, "u0", "v1") for _ in range(5)]
    return calls


async def chat(client: Client, call: Call, text: str) -> str:
    headers = {
        "Helicone-User-Id": call.user,
        "Helicone-Property-Prompt-Version": call.version,
        "Helicone-Property-Variant": call.variant,
    }
    body = {"model": call.model, "messages": [{"role": "user", "content": text}]}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status == 200, await response.text()
    return response.headers["helicone-id"]


async def api(client: Client, method: str, path: str, body: Any) -> Any:
    response = await client.request(method, path, json=body)
    payload = await response.json()
    assert response.status in (200, 201), payload
    return payload["data"]


async def send(client: Client, calls: list[Call]) -> list[str]:
    """The calls through the proxy, then their feedback and scores through the API."""
    ids = await asyncio.gather(*(chat(client, c, f"question {n}") for n, c in enumerate(calls)))
    for request_id, call in zip(ids, calls, strict=True):
        if call.rating is not None:
            feedback: dict[str, Any] = {"rating": call.rating}
            if call.comment is not None:
                feedback["comment"] = call.comment
            await api(client, "POST", f"/v1/request/{request_id}/feedback", feedback)
        if call.accuracy is not None:
            scores = {"scores": {"accuracy": call.accuracy}}
            await api(client, "POST", f"/v1/request/{request_id}/score", scores)
    return list(ids)


@pytest.fixture
async def client(make_proxy: ProxyFactory) -> Client:
    started = await make_proxy()
    await send(started, traffic())
    return started


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text[:800]
    return text


async def stats(client: Client, tree: Any = "all", group_by: list[str] | None = None) -> Any:
    return await api(
        client, "POST", "/v1/request/stats", {"filter": tree, "group_by": group_by or []}
    )


def figures(html: str) -> dict[str, str]:
    return dict(FIGURE.findall(html))


def points(html: str, tag: str = "circle") -> list[tuple[str, str, float]]:
    """The (series, x, y) of the page's chart points of one shape (circle: lines, rect: columns)."""
    return [(unescape(s), unescape(x), float(y)) for t, s, x, y in POINT.findall(html) if t == tag]


def section(html: str, name: str) -> str:
    found = re.search(f'<section class="[^"]*" id="{name}">(.*?)</section>', html, re.S)
    assert found, f"no section {name}"
    return found.group(1)


MODEL_TREE = {"request": {"model": {"equals": "gpt-4o-mini"}}}


@pytest.mark.parametrize(("query", "tree"), [("", "all"), ("?model=gpt-4o-mini", MODEL_TREE)])
async def test_the_figures_are_the_stats_apis(client: Client, query: str, tree: Any) -> None:
    html = await page(client, "/analytics" + query)
    expected = await stats(client, tree)
    found = figures(html)
    assert int(found["requests"]) == expected["requests"]
    assert int(found["rated"]) == expected["feedback"]["count"]
    assert float(found["rate"]) == expected["feedback"]["positive_rate"]
    assert int(found["negative"]) == expected["feedback"]["negative"]
    assert '<a href="/analytics" aria-current="page">Analytics</a>' in html
    # Sent within moments: one hourly point (two if an hour began meanwhile), the same rate.
    lines, columns = points(section(html, "over-time")), points(section(html, "over-time"), "rect")
    assert {s for s, _, _ in lines} == {"all"} and 1 <= len(lines) <= 2
    assert sum(y for _, _, y in columns) == expected["feedback"]["count"]
    positive = sum(rate * rated for (_, _, rate), (_, _, rated) in zip(lines, columns, strict=True))
    assert positive == pytest.approx(expected["feedback"]["positive"])


async def test_split_by_model_has_a_line_per_model(client: Client) -> None:
    html = await page(client, "/analytics?split=model&bucket=day")
    assert '<option value="model" selected>' in html and '<option value="day" selected>' in html
    expected = await stats(client, "all", ["day", "model"])
    want = {
        (g["key"]["model"], g["key"]["day"]): g["feedback"]["positive_rate"]
        for g in expected["groups"]
        if g["feedback"]["count"]
    }
    assert {(s, x): y for s, x, y in points(html)} == pytest.approx(want, abs=1e-6)
    assert len(want) == 2
    assert "Positive rate per day, by model" in html


async def test_split_by_a_property_offers_the_keys_and_escapes_values(client: Client) -> None:
    html = await page(client, "/analytics?split=property:Prompt-Version")
    assert (
        '<option value="property:prompt-version" selected>property prompt-version</option>' in html
    )
    assert '<option value="property:variant">property variant</option>' in html
    assert {s for s, _, _ in points(html)} == {"v1", "v2"}

    hostile = await page(client, "/analytics?split=property:variant")
    assert {s for s, _, _ in points(hostile)} == {"plain", HOSTILE}
    assert "<img" not in hostile
    assert 'data-series="&lt;img src=x onerror=alert(1)&gt;"' in hostile


async def test_split_by_user_keeps_the_top_users_and_sums_the_rest(client: Client) -> None:
    html = await page(client, "/analytics?split=user")
    columns = points(section(html, "over-time"), "rect")
    names = [s for s, _, _ in columns]
    assert len(names) == 7 and names[-1] == "other"  # six users, then the other four
    assert sum(y for _, _, y in columns) == (await stats(client))["feedback"]["count"]
    assert "other</li>" in html  # in the legend


async def test_scores_show_the_stats_averages_and_a_histogram(client: Client) -> None:
    html = await page(client, "/analytics")
    expected = (await stats(client))["scores"]["accuracy"]
    scores = section(html, "scores")
    avg = re.search(r'<tr data-name="accuracy">.*?data-value="([^"]+)"', scores)
    assert avg is not None and float(avg.group(1)) == expected["avg"]
    bins = points(scores, "rect")
    assert sum(y for _, _, y in bins) == expected["count"] == 35
    assert len(bins) == 10  # 60 to 94: ten equal bins


async def test_the_latest_negatives_link_into_the_drawer(client: Client) -> None:
    html = await page(client, "/analytics?model=gpt-4o-mini")
    negatives = section(html, "negatives")
    rows = re.findall(r'<tr data-id="([^"]+)">\s*<td class="time"><a href="([^"]+)"', negatives)
    assert len(rows) == 10
    for request_id, href in rows:
        assert unescape(href) == f"/requests/{request_id}?model=gpt-4o-mini"
    for n in range(30, 35):
        assert f"wrong answer {n}" in negatives
    detail = await api(client, "GET", f"/v1/request/{rows[0][0]}", None)
    assert detail["feedback"]["rating"] is False and detail["model"] == "gpt-4o-mini"


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("split=colour", "split must be model, user or property:KEY"),
        ("split=property:", "split must be model, user or property:KEY"),
        ("bucket=week", "bucket must be hour or day"),
        ("feedback=maybe", "expected one of"),
        ("cmp=both", "cmp must be groups or periods"),
        ("cmp=periods&cmp_days=0", "cmp_days must be a whole number of days from 1 to 366"),
        ("cmp=periods&cmp_days=week", "cmp_days must be a whole number of days"),
        ("cmp=groups&cmp_by=colour&cmp_a=x&cmp_b=y", "cmp_by must be model, user or"),
        ("cmp=groups&cmp_a=" + "x" * 1025 + "&cmp_b=y", "cmp_a is longer than 1024 characters"),
    ],
)
async def test_bad_parameters_are_a_400_that_says_why(
    make_proxy: ProxyFactory, query: str, problem: str
) -> None:
    client = await make_proxy()
    html = await page(client, f"/analytics?{query}", 400)
    assert problem in unescape(html)
    assert 'id="filter-form"' in html and 'action="/analytics"' in html


async def test_an_empty_store_and_unrated_rows_say_what_to_do(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    empty = await page(client, "/analytics")
    assert "Nothing logged yet" in empty and "<svg" not in empty
    await send(client, [Call("gpt-4o", None, "u1", "v1") for _ in range(3)])
    unrated = await page(client, "/analytics?split=user")
    assert "No rated requests yet" in unrated and "3 requests match, none rated" in unrated
    assert "<svg" not in unrated and figures(unrated)["rate"] == ""


async def test_a_slow_read_asks_to_narrow_the_time_range(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(dashboard={"query_timeout_s": 1e-9})
    html = await page(client, "/analytics?split=model&since=7d", 503)
    assert "narrow the time range" in html and '<option value="7d" selected>' in html


INTERVAL = re.compile(r'<circle class="point"[^>]* data-series="([^"]*)" data-y="([^"]*)" '
                      r'data-low="([^"]*)" data-high="([^"]*)"')  # fmt: skip


def compared(html: str) -> tuple[str, dict[str, float]]:
    """The verdict and each group's rate on the interval chart."""
    verdict = re.search(r'<span class="verdict [^"]*" id="verdict">([^<]*)</span>', html)
    assert verdict, "no verdict on the page"
    rates = {unescape(label): float(y) for label, y, _, _ in INTERVAL.findall(html)}
    return verdict.group(1), rates


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [("gpt-4o-mini", "gpt-4o", "better"), ("gpt-4o", "gpt-4o-mini", "worse")],
)
async def test_two_models_compared(client: Client, a: str, b: str, verdict: str) -> None:
    path = f"/analytics?since=7d&cmp=groups&cmp_by=model&cmp_a={a}&cmp_b={b}"
    html = await page(client, path)
    rates = {
        g["key"]["model"]: g["feedback"]["positive_rate"]
        for g in (await stats(client, "all", ["model"]))["groups"]
    }
    found, shown = compared(html)
    assert found == verdict
    assert shown == pytest.approx({f"model = {a}": rates[a], f"model = {b}": rates[b]}, abs=1e-6)
    difference = re.search(r'id="difference" data-value="([^"]+)"', html)
    assert difference and float(difference.group(1)) == pytest.approx(rates[b] - rates[a], abs=1e-6)
    assert f"model = {b} is {verdict} than model = {a}" in html
    # The filter form keeps the comparison, the comparison forms keep the filter.
    assert '<input type="hidden" name="cmp_b" value="' + b + '">' in html
    assert html.count('<input type="hidden" name="since" value="7d">') == 2


async def test_prompt_versions_compared_and_few_ratings_are_not_enough(client: Client) -> None:
    html = await page(
        client, "/analytics?cmp=groups&cmp_by=property:prompt-version&cmp_a=v1&cmp_b=v2"
    )
    verdict, rates = compared(html)
    assert verdict == "better"
    assert rates == pytest.approx(
        {"property prompt-version = v1": 10 / 35, "property prompt-version = v2": 31 / 35}
    )
    few = await page(client, "/analytics?cmp=groups&cmp_by=user&cmp_a=u0&cmp_b=u1")
    verdict, rates = compared(few)
    assert verdict == "not enough data"
    assert rates.keys() == {"user = u0", "user = u1"}
    assert "Not enough data to compare: user = u0 has 8 and user = u1 has 8 rated" in few
    asked = await page(client, "/analytics?cmp=groups&cmp_by=user&cmp_a=u0")
    assert "Pick a value of user for A and for B." in asked and 'id="verdict"' not in asked
    assert '<option value="u0">' in asked  # the store's users are offered


async def test_a_hostile_group_value_stays_text(client: Client) -> None:
    html = await page(
        client,
        "/analytics?cmp=groups&cmp_by=property:variant&cmp_b=plain&cmp_a="
        + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
    )
    verdict, rates = compared(html)
    assert f"property variant = {HOSTILE}" in rates and verdict == "not enough data"
    assert "<img" not in html


async def test_two_periods_compared(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    now = time.time()
    rows = [
        Row(id=f"p{n:02}", created_at=utc_iso(now - (43_200 if n < 40 else 864_000)),
            method="POST", path="/v1/chat/completions", status=200, outcome="ok", model="m")
        for n in range(80)
    ]  # fmt: skip
    await client.app[STORE].write_batch(rows)
    # The last week: 36 of 40 rated up; the week before: 12 of 40.
    items = [
        {"request_id": row.id, "rating": n % 40 < (36 if n < 40 else 12)}
        for n, row in enumerate(rows)
    ]
    await api(client, "POST", "/v1/feedback/batch", {"items": items})
    html = await page(client, "/analytics?since=1h&cmp=periods&cmp_days=7")
    verdict, rates = compared(html)
    assert verdict == "better"
    assert rates == pytest.approx({"the 7 days before": 0.3, "last 7 days": 0.9})
    assert "The periods replace the filter bar" in html
    assert "Nothing logged for this filter yet" in html  # nothing in the last hour itself
    day = await page(client, "/analytics?cmp=periods&cmp_days=1")
    verdict, rates = compared(day)
    assert verdict == "not enough data" and rates == pytest.approx({"last day": 0.9})
    assert "the day before has 0 rated requests" in day


@pytest.mark.parametrize("split", [None, "model", "user", "property:prompt_version"])
@pytest.mark.parametrize("top", [1, 6])
async def test_hours_added_up_by_day_are_the_daily_split(
    store_url: str, split: str | None, top: int
) -> None:
    store = open_store(store_url)
    await store.open()
    await fill(store)
    hours = await rated_split(store, ALL, "hour", split, top)
    days = await rated_split(store, ALL, "day", split, top)
    assert days, "the log has ratings"
    assert sorted(map(repr, by_day(hours, split))) == sorted(map(repr, days))
    await store.close()
