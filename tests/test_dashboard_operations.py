"""The dashboard's operations, sessions and users pages over HTTP, on the sandbox with seeded
traffic: their numbers against POST /v1/request/stats, the filters their links carry, the
session tree, session feedback through the API, and logged strings that stay text."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from proxy.sandbox import FAULT_HEADER
from proxy.state import STORE
from storage import Row
from tests.helpers import Client, ProxyFactory

XSS = "<img src=x onerror=alert(1)>"


async def chat(client: Client, text: str, model: str = "gpt-4o-mini", **headers: str) -> str:
    """One chat completion through relaylog; `headers` by Helicone name without the prefix
    (User_Id -> Helicone-User-Id); returns the request id."""
    sent = {
        ("Helicone-" + k.replace("_", "-") if k != "fault" else FAULT_HEADER): v
        for k, v in headers.items()
    }
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    answer = await client.post("/v1/chat/completions", json=body, headers=sent)
    await answer.read()
    return answer.headers["helicone-id"]


async def seed(client: Client) -> dict[str, str]:
    """Chats by three users (one an XSS string) in two sessions, an upstream error, feedback;
    the request ids by name."""
    ids = {}
    trip = {"Session_Id": "trip-1", "Session_Name": "Plan a trip"}
    for name, path, user in [
        ("plan", "/plan", "alice"),
        ("flights", "/plan/flights", "alice"),
        ("hotels", "/plan/hotels", "bob"),
        ("cheap", "/plan/hotels/cheap", "bob"),
        ("book", "/book", "alice"),
    ]:
        ids[name] = await chat(client, f"{name} please", User_Id=user, Session_Path=path, **trip)
    ids["xss"] = await chat(
        client, "hostile", model="gpt-4o", User_Id=XSS, Session_Id="evil", Session_Name=XSS,
        Session_Path="/" + XSS,
    )  # fmt: skip
    ids["error"] = await chat(client, "fails", User_Id="bob", fault="status=500")
    ids["lone"] = await chat(client, "no user")
    for name, rating in [("plan", True), ("flights", True), ("hotels", False), ("xss", False)]:
        rated = await client.post(f"/v1/request/{ids[name]}/feedback", json={"rating": rating})
        assert rated.status == 200, await rated.text()
    return ids


async def seeded(
    make_proxy: ProxyFactory, **sections: dict[str, Any]
) -> tuple[Client, dict[str, str]]:
    client = await make_proxy(**sections)
    return client, await seed(client)


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
