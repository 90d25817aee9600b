"""The dashboard's operations, sessions and users pages over HTTP, on the sandbox with seeded
traffic: their numbers against POST /v1/request/stats, the filters their links carry, the
session tree, session feedback through the API, and logged strings that stay text."""

from __future__ import annotations

import asyncio
import re
from html import escape, unescape
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest

from proxy.dashboard.formats import ms, usd
from proxy.sandbox import FAULT_HEADER
from proxy.state import STORE
from storage import Row
from tests.helpers import Client, ProxyFactory

XSS = "<img src=x onerror=alert(1)>"


def auth(key: str | None) -> dict[str, str]:
    return (
        {} if key is None else {"Authorization": f"Bearer {key}", "Helicone-Auth": f"Bearer {key}"}
    )


async def chat(
    client: Client, text: str, model: str = "gpt-4o-mini", key: str | None = None, **headers: str
) -> str:
    """One chat completion through relaylog; `headers` by Helicone name without the prefix
    (User_Id -> Helicone-User-Id); returns the request id."""
    sent = {
        ("Helicone-" + k.replace("_", "-") if k != "fault" else FAULT_HEADER): v
        for k, v in headers.items()
    }
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    answer = await client.post("/v1/chat/completions", json=body, headers={**sent, **auth(key)})
    await answer.read()
    return answer.headers["helicone-id"]


async def seed(client: Client, key: str | None = None) -> dict[str, str]:
    """Chats by three users (one an XSS string) in two sessions, an upstream error, feedback;
    the request ids by name."""
    ids = {}
    trip = {"Session_Id": "trip-1", "Session_Name": "Plan a trip", "Property_App": "planner"}
    for name, path, user in [
        ("plan", "/plan", "alice"),
        ("flights", "/plan/flights", "alice"),
        ("hotels", "/plan/hotels", "bob"),
        ("cheap", "/plan/hotels/cheap", "bob"),
        ("book", "/book", "alice"),
    ]:
        ids[name] = await chat(
            client, f"{name} please", key=key, User_Id=user, Session_Path=path, **trip
        )
        await asyncio.sleep(0.002)  # each a millisecond of its own: the tree follows time
    ids["xss"] = await chat(
        client, "hostile", model="gpt-4o", key=key, User_Id=XSS, Session_Id="evil",
        Session_Name=XSS, Session_Path="/" + XSS, Property_App=XSS,
    )  # fmt: skip
    ids["error"] = await chat(client, "fails", key=key, User_Id="bob", fault="status=500")
    ids["lone"] = await chat(client, "no user", key=key)
    for name, rating in [("plan", True), ("flights", True), ("hotels", False), ("xss", False)]:
        rated = await client.post(
            f"/v1/request/{ids[name]}/feedback", json={"rating": rating}, headers=auth(key)
        )
        assert rated.status == 200, await rated.text()
    return ids


async def seeded(
    make_proxy: ProxyFactory, **sections: dict[str, Any]
) -> tuple[Client, dict[str, str]]:
    client = await make_proxy(**sections)
    keys = sections.get("auth", {}).get("proxy_keys")
    return client, await seed(client, keys[0] if keys else None)


async def page(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path, allow_redirects=False)
    text = await response.text()
    assert response.status == status, text[:800]
    return text


async def stats(client: Client, tree: Any = "all", group_by: Any = ()) -> Any:
    answer = await client.post(
        "/v1/request/stats", json={"filter": tree, "group_by": list(group_by)}
    )
    payload = await answer.json()
    assert answer.status == 200, payload
    return payload["data"]


def query_of(href: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(unescape(href)).query)


USER_ROW = re.compile(
    r'<tr data-user="([^"]*)">\s*<td class="user"><a href="([^"]*)"[^>]*>[^<]*</a></td>\s*'
    r'<td class="num requests">([^<]*)</td>'
)


def users_of(html: str) -> list[tuple[str, str, str]]:
    """(user id, link, requests) per row of the users table, unescaped."""
    return [(unescape(u), unescape(h), n) for u, h, n in USER_ROW.findall(html)]


async def test_users_match_the_stats_api_and_link_to_their_requests(
    make_proxy: ProxyFactory,
) -> None:
    client, _ = await seeded(make_proxy)
    groups = (await stats(client, group_by=["user"]))["groups"]
    expected = {g["key"]["user"]: g["requests"] for g in groups if g["key"]["user"] is not None}
    html = await page(client, "/users")
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    rows = users_of(html)
    assert [(user, int(n)) for user, _, n in rows] == sorted(
        expected.items(), key=lambda item: (-item[1], item[0])
    )
    assert {user: query_of(href) for user, href, _ in rows}["bob"] == [("user", "bob")]

    filtered = users_of(await page(client, "/users?model=gpt-4o-mini&sort=last_seen"))
    assert [user for user, _, _ in filtered] == ["bob", "alice"]
    bob_link = filtered[0][1]
    assert query_of(bob_link) == [("model", "gpt-4o-mini"), ("user", "bob")]
    listed = await page(client, bob_link)
    tree = {
        "left": {"request": {"model": {"equals": "gpt-4o-mini"}}},
        "operator": "and",
        "right": {"request": {"user_id": {"equals": "bob"}}},
    }
    wanted = await stats(client, tree)
    assert len(re.findall(r'<tr data-id="', listed)) == wanted["requests"] == 3


async def test_users_sort_pages_and_stay_text(make_proxy: ProxyFactory) -> None:
    client, _ = await seeded(make_proxy, dashboard={"page_size": 10})
    more_users = [
        Row(id=f"u{n}", created_at=f"2024-06-01T10:00:{n:02}.000Z", method="POST",
            path="/v1/chat/completions", outcome="ok", user_id=f"user-{n:02}", cost_usd=n / 100)
        for n in range(12)
    ]  # fmt: skip
    await client.app[STORE].write_batch(more_users)
    html = await page(client, "/users?sort=cost")
    seen = [user for user, _, _ in users_of(html)]
    assert seen[:3] == ["user-11", "user-10", "user-09"] and len(seen) == 10
    more = re.search(r'<a id="more" class="button" href="([^"]+)"', html)
    assert more is not None and ("sort", "cost") in query_of(more.group(1))
    html = await page(client, unescape(more.group(1)))
    seen += [user for user, _, _ in users_of(html)]
    assert 'id="more"' not in html
    assert sorted(seen) == sorted(["alice", "bob", XSS, *(r.user_id or "" for r in more_users)])
    assert "cannot sort users" in await page(client, "/users?sort=name", 400)
    assert "invalid cursor" in await page(client, "/users?cursor=nope", 400)


async def test_users_empty_and_slow(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    assert "No users yet" in await page(client, "/users")
    assert "matches this filter" in await page(client, "/users?model=none")
    slow = await make_proxy(dashboard={"query_timeout_s": 1e-9})
    assert "narrow the time range" in await page(slow, "/users?since=24h", 503)


SESSION_ROW = re.compile(
    r'<tr data-session="([^"]*)">.*?<td class="num requests">([^<]*)</td>', re.DOTALL
)
TREE_LINE = re.compile(
    r'<li class="(request|node) depth-(\d)" data-path="([^"]*)"(?: data-id="([^"]*)")?>'
)


async def test_sessions_match_the_stats_api_and_search(make_proxy: ProxyFactory) -> None:
    client, _ = await seeded(make_proxy)
    html = await page(client, "/sessions")
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    listed = [(unescape(s), n) for s, n in SESSION_ROW.findall(html)]
    assert [s for s, _ in listed] == ["evil", "trip-1"]
    for session_id, requests in listed:
        wanted = await stats(client, {"request": {"session_id": {"equals": session_id}}})
        assert int(requests) == wanted["requests"]
    trip = await stats(client, {"request": {"session_id": {"equals": "trip-1"}}})
    assert trip["requests"] == 5 and f"{trip['tokens']['total']:,}" in html
    assert [s for s, _ in SESSION_ROW.findall(await page(client, "/sessions?search=TRIP"))] == [
        "trip-1"
    ]
    by_bob = SESSION_ROW.findall(await page(client, "/sessions?user=bob"))
    assert by_bob == [("trip-1", "2")]
    assert "No session matches" in await page(client, "/sessions?search=nothing")


async def test_a_session_is_a_tree_of_its_paths_with_links_to_each_drawer(
    make_proxy: ProxyFactory,
) -> None:
    client, ids = await seeded(make_proxy)
    html = await page(client, "/sessions/trip-1")
    lines = [(kind, int(depth), path, rid) for kind, depth, path, rid in TREE_LINE.findall(html)]
    assert lines == [
        ("request", 0, "/plan", ids["plan"]),
        ("request", 1, "/plan/flights", ids["flights"]),
        ("request", 1, "/plan/hotels", ids["hotels"]),
        ("request", 2, "/plan/hotels/cheap", ids["cheap"]),
        ("request", 0, "/book", ids["book"]),
    ]
    drawer = f'href="/requests/{ids["cheap"]}?session=trip-1"'
    assert html.count(drawer) == 2  # the tree line and its timeline bar
    assert html.count('class="point"') == 5 and "Requests over the session" in html
    opened = await page(client, f"/requests/{ids['cheap']}?session=trip-1")
    assert 'id="detail"' in opened and "cheap please" in opened
    assert "Plan a trip" in html and "not rated" in html

    evil = await page(client, "/sessions/evil")
    assert XSS not in evil and evil.count("&lt;img src=x onerror=alert(1)&gt;") >= 3
    assert "no request of session" in await page(client, "/sessions/nope", 404)


def gapped() -> list[Row]:
    """A session whose paths skip a level: /a/b/c with no request at /a or /a/b."""
    return [
        Row(id="g1", created_at="2024-06-01T10:00:00.000Z", method="POST", path="/v1/x",
            outcome="ok", session_id="gap", session_path="/a/b/c", latency_ms=5.0),
        Row(id="g2", created_at="2024-06-01T10:00:01.000Z", method="POST", path="/v1/x",
            outcome="timeout", session_id="gap", session_path=None),
    ]  # fmt: skip


async def test_segments_without_requests_still_show_in_the_tree(make_proxy: ProxyFactory) -> None:
    client, _ = await seeded(make_proxy)
    await client.app[STORE].write_batch(gapped())
    html = await page(client, "/sessions/gap")
    lines = [(kind, int(depth), path, rid) for kind, depth, path, rid in TREE_LINE.findall(html)]
    assert lines == [
        ("request", 0, "", "g2"),
        ("node", 0, "/a", ""),
        ("node", 1, "/a/b", ""),
        ("request", 2, "/a/b/c", "g1"),
    ]
    assert "(no path)" in html


async def test_session_feedback_is_stored_and_read_back(make_proxy: ProxyFactory) -> None:
    client, ids = await seeded(make_proxy, auth={"proxy_keys": ["sk-ops"]})
    origin = str(client.make_url("")).rstrip("/")
    cookies = {"relaylog_key": "sk-ops"}
    rate = "/v1/session/trip-1/feedback"
    # What static/sessions.js sends: JSON from the page's origin, with the key cookie.
    same, evil = {"Origin": origin}, {"Origin": "http://evil.test"}
    sent = await client.post(rate, json={"rating": False}, headers=same, cookies=cookies)
    assert sent.status == 200, await sent.text()
    foreign = await client.post(rate, json={"rating": True}, headers=evil, cookies=cookies)
    assert foreign.status == 403
    record = await client.get(f"/v1/request/{ids['hotels']}", cookies=cookies)
    assert (await record.json())["data"]["session"]["feedback"]["rating"] is False
    html = await (await client.get("/sessions/trip-1", cookies=cookies)).text()
    assert 'data-rating="false" aria-pressed="true"' in html and "rated down" in html
    listed = await (await client.get("/sessions", cookies=cookies)).text()
    assert 'title="rated down">▼</td>' in listed
    assert "sessions.js" in html


async def test_sessions_empty_and_slow(make_proxy: ProxyFactory) -> None:
    assert "No sessions yet" in await page(await make_proxy(), "/sessions")
    client = await make_proxy(dashboard={"query_timeout_s": 1e-9})
    assert "narrow the time range" in await page(client, "/sessions?since=24h", 503)
    assert "narrow the time range" in await page(client, "/sessions/trip-1", 503)


FIGURE = re.compile(r'<dd id="fig-([a-z0-9]+)">([^<]*)</dd>')
POINT = re.compile(
    r'<rect class="point" [^>]*data-series="([^"]*)" data-x="([^"]*)" data-y="([^"]*)"'
)
TOP_ROW = re.compile(r'<td class="value"><a href="([^"]*)" title="([^"]*)">')


def figures(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in FIGURE.findall(html)}


def top_links(html: str, section: str) -> dict[str, list[tuple[str, str]]]:
    """{value: the query of its link} for one of the top lists."""
    start = html.index(f'<section class="top" id="{section}">')
    part = html[start : html.index("</section>", start)]
    return {unescape(value): query_of(href) for href, value in TOP_ROW.findall(part)}


def outcome_columns(html: str) -> dict[str, float]:
    """The requests per outcome the first chart (requests by outcome) draws, summed."""
    chart = html[html.index('<figure class="chart columns">') :]
    chart = chart[: chart.index("</figure>")]
    drawn: dict[str, float] = {}
    for series, _, value in POINT.findall(chart):
        drawn[unescape(series)] = drawn.get(unescape(series), 0.0) + float(value)
    return drawn


@pytest.mark.parametrize(
    ("query", "tree"),
    [
        ("", "all"),
        ("since=24h&model=gpt-4o-mini", {"request": {"model": {"equals": "gpt-4o-mini"}}}),
        ("user=bob", {"request": {"user_id": {"equals": "bob"}}}),
        ("outcome=upstream_error", {"request": {"outcome": {"equals": "upstream_error"}}}),
    ],
)
async def test_operations_match_the_stats_api(
    make_proxy: ProxyFactory, query: str, tree: Any
) -> None:
    client, _ = await seeded(make_proxy)
    html = await page(client, f"/operations?{query}")
    wanted = await stats(client, tree, ["outcome"])
    shown = figures(html)
    assert shown["requests"] == f"{wanted['requests']:,}"
    assert shown["errors"].split(" ")[0] == f"{wanted['errors']:,}"
    assert shown["tokens"] == f"{wanted['tokens']['total']:,}"
    assert shown["cost"] == usd(wanted["cost_usd"])
    assert shown["p50"] == ms(wanted["latency_ms"]["p50"])
    assert shown["p99"] == ms(wanted["latency_ms"]["p99"])
    by_outcome = {g["key"]["outcome"]: float(g["requests"]) for g in wanted["groups"]}
    assert outcome_columns(html) == by_outcome
    for title in ("Latency per hour", "Time to first token per hour", "Tokens per hour",
                  "Cost per hour"):  # fmt: skip
        assert f"<figcaption>{title}</figcaption>" in html


async def test_operations_links_carry_the_filter(make_proxy: ProxyFactory) -> None:
    client, _ = await seeded(make_proxy)
    html = await page(client, "/operations?since=24h&model=gpt-4o-mini")
    users = top_links(html, "top-users")
    assert list(users) == ["alice", "bob"]  # three each: by name
    assert users["bob"] == [("since", "24h"), ("model", "gpt-4o-mini"), ("user", "bob")]
    models = top_links(html, "top-models")
    assert models == {"gpt-4o-mini": [("since", "24h"), ("model", "gpt-4o-mini")]}
    assert 'data-url="/operations/values?since=24h&amp;model=gpt-4o-mini&amp;prop=app"' in html
    values = top_links(await page(client, "/operations/values?since=24h&model=gpt-4o-mini"),
                       "top-values")  # fmt: skip
    assert values == {
        "planner": [("since", "24h"), ("model", "gpt-4o-mini"), ("property", "app=planner")]
    }
    assert top_links(await page(client, "/operations/values?prop=nope"), "top-values") == {}
    every_value = await page(client, "/operations/values")
    assert XSS not in every_value and top_links(every_value, "top-values")[XSS] == [
        ("property", f"app={XSS}")
    ]
    listed = await page(client, "/requests?" + urlencode(users["bob"]))
    assert len(re.findall(r'<tr data-id="', listed)) == 3

    everything = await page(client, "/operations")
    assert "Sign out" not in everything  # no keys are set: the page says nothing of signing
    assert XSS not in everything and "&lt;img src=x onerror=alert(1)&gt;" in everything
    assert list(top_links(everything, "top-models")) == ["gpt-4o-mini", "gpt-4o"]
    assert top_links(everything, "top-users")[XSS] == [("user", XSS)]


async def test_operations_empty_bad_and_slow(make_proxy: ProxyFactory) -> None:
    empty = await make_proxy()
    fresh = await page(empty, "/operations")
    assert "Nothing logged yet" in fresh
    assert '<option value="" selected>no properties logged</option>' in fresh
    assert "No requests match this filter" in await page(empty, "/operations?model=nope")
    assert "bucket must be" in await page(empty, "/operations?bucket=week", 400)
    assert "No properties logged" in await page(empty, "/operations/values")
    slow = await make_proxy(dashboard={"query_timeout_s": 1e-9})
    assert "narrow the time range" in await page(slow, "/operations?since=7d", 503)
    narrow = await page(slow, "/operations/values?since=7d", 503)
    assert narrow.startswith("This view took longer")  # a short text for the page script


async def test_session_ids_with_slashes_and_percents_have_their_page(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy()
    for n, session_id in enumerate(["team/alpha", "50% off", "ü?#"]):
        row = Row(id=f"odd{n}", created_at="2024-01-01T00:00:00.000Z", method="POST",
                  path="/v1/x", outcome="ok", session_id=session_id, session_path="/a")  # fmt: skip
        await client.app[STORE].write_batch([row])
        listed = await page(client, "/sessions?" + urlencode({"search": session_id}))
        link = re.search(r'<td class="sid"><a href="([^"]+)"', listed)
        assert link is not None and "/" not in link.group(1).removeprefix("/sessions/")
        html = await page(client, unescape(link.group(1)))
        assert f'data-session="{escape(session_id)}"' in html and f'data-id="odd{n}"' in html
        # What static/sessions.js posts to: the id as one encoded path segment.
        rated = await client.post(
            "/v1/session/" + quote(session_id, safe="") + "/feedback", json={"rating": False}
        )
        assert (await rated.json())["data"]["session_id"] == session_id
