"""The dashboard over HTTP: pages, filters in the URL, parts the page script fetches, sign-in,
the key cookie on the API, security headers and the time limit (the browser tests are apart)."""

from __future__ import annotations

import re
from html import escape as html_escape
from html import unescape
from typing import Any

import orjson
import pytest
from yarl import URL

from proxy.dashboard.routes import CSP
from proxy.state import STORE
from storage import Row
from tests.helpers import Client, ProxyFactory
from tests.logbook import fill

KEY = "sk-dashboard-test-key"
FEEDBACK_KEY = "fb-only-key"
ROW_ID = re.compile(r'<tr data-id="([^"]+)"')


async def seeded(make_proxy: ProxyFactory, **sections: dict[str, Any]) -> Client:
    client = await make_proxy(**sections)
    await fill(client.app[STORE])
    return client


def row_ids(html: str) -> list[str]:
    return ROW_ID.findall(html)


async def page(client: Client, path: str, status: int = 200, **kwargs: Any) -> str:
    response = await client.get(path, allow_redirects=False, **kwargs)
    text = await response.text()
    assert response.status == status, text[:500]
    return text


async def test_list_is_newest_first_with_the_security_headers(make_proxy: ProxyFactory) -> None:
    client = await seeded(make_proxy)
    response = await client.get("/requests")
    assert response.status == 200
    assert response.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert row_ids(await response.text()) == ["r6", "r5", "r4", "r3", "r2", "r1"]
    home = await client.get("/", allow_redirects=False)
    assert home.status == 303 and home.headers["Location"] == "/requests"
    static = await client.get("/static/app.js")
    assert static.status == 200 and static.headers["X-Content-Type-Options"] == "nosniff"
    assert static.headers["Content-Security-Policy"] == CSP


async def test_static_errors_carry_the_security_headers_and_forwarded_calls_do_not(
    proxy: Client,
) -> None:
    missing = await proxy.get("/static/no-such-file.js")
    assert missing.status == 404
    assert missing.headers["Content-Security-Policy"] == CSP
    assert missing.headers["X-Frame-Options"] == "DENY"
    forwarded = await proxy.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert forwarded.status == 200
    assert "Content-Security-Policy" not in forwarded.headers


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("feedback=up", ["r5", "r1"]),
        ("feedback=down", ["r2"]),
        ("score=accuracy>70", ["r2", "r1"]),
        ("feedback=up&score=accuracy>90", ["r1"]),
        ("model=gpt-4o-mini&outcome=ok", ["r1"]),
        ("user=bob", ["r6", "r2"]),
        ("property=app=chat", ["r6", "r3", "r1"]),
        ("status=5xx", ["r3"]),
        ("status=400", ["r4"]),
        ("q=world", ["r1"]),
        ("since=custom&from=2024-05-02T00:00&to=2024-05-03T00:00", ["r4", "r3"]),
        ("from=2024-05-02T00:00", ["r6", "r5", "r4", "r3", "r2", "r1"]),
        ("filter=" + orjson.dumps({"request": {"session_id": {"equals": "s2"}}}).decode(),
         ["r6", "r5"]),
        ("model=&user=&feedback=", ["r6", "r5", "r4", "r3", "r2", "r1"]),
    ],
)  # fmt: skip
async def test_the_url_filter_narrows_the_list(
    make_proxy: ProxyFactory, query: str, expected: list[str]
) -> None:
    client = await seeded(make_proxy)
    assert row_ids(await page(client, f"/requests?{query}")) == expected
    counted = await (await client.get(f"/requests/count?{query}")).json()
    assert counted == {"count": len(expected), "capped": False, "text": str(len(expected))}


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("score=accuracy>lots", "is not a number"),
        ("status=99", "expected a status code"),
        ("filter={nope", "not valid JSON"),
        ("feedback=maybe", "expected one of"),
        ("since=yesterday", "is not an ISO date/time"),
    ],
)
async def test_a_bad_filter_is_a_400_that_says_why(
    make_proxy: ProxyFactory, query: str, problem: str
) -> None:
    client = await seeded(make_proxy)
    html = await page(client, f"/requests?{query}", 400)
    assert problem in html
    assert 'id="filter-form"' in html and 'action="/requests"' in html  # to fix it in place
    assert problem in await page(client, f"/requests/count?{query}", 400)


async def test_an_empty_list_says_whether_the_log_or_the_filter_is_empty(
    make_proxy: ProxyFactory,
) -> None:
    empty = await make_proxy()
    fresh = await page(empty, "/requests")
    assert "Nothing logged yet" in fresh and "No requests match" not in fresh
    narrowed = await page(empty, "/requests?model=nope")
    assert "No requests match this filter" in narrowed and "Nothing logged yet" not in narrowed
    logged = await seeded(make_proxy)
    assert "No requests match this filter" in await page(logged, "/requests?model=nope")


async def test_pages_tail_and_the_capped_count(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(dashboard={"page_size": 10, "count_cap": 12})
    rows = [
        Row(id=f"q{n:02}", created_at=f"2024-06-01T10:00:{n:02}.000Z", method="POST",
            path="/v1/chat/completions", status=200, outcome="ok")
        for n in range(25)
    ]  # fmt: skip
    await client.app[STORE].write_batch(rows)
    first = await client.get("/requests")
    html = await first.text()
    assert row_ids(html) == [f"q{n:02}" for n in range(24, 14, -1)]
    cursor = re.search(r'data-cursor="([^"]+)"', html)
    assert cursor is not None
    second = await client.get("/requests/rows", params={"cursor": cursor.group(1)})
    assert row_ids(await second.text()) == [f"q{n:02}" for n in range(14, 4, -1)]
    third = await client.get("/requests/rows", params={"cursor": second.headers[
        "Relaylog-Next-Cursor"]})  # fmt: skip
    assert row_ids(await third.text()) == [f"q{n:02}" for n in range(4, -1, -1)]
    assert "Relaylog-Next-Cursor" not in third.headers

    newer = await client.get(
        "/requests/rows", params={"after_time": rows[21].created_at, "after_id": "q21"}
    )
    assert row_ids(await newer.text()) == ["q22", "q23", "q24"]
    counted = await (await client.get("/requests/count")).json()
    assert counted == {"count": 12, "capped": True, "text": "12+"}


async def test_the_count_is_capped_under_a_filter_and_exact_in_the_api(
    make_proxy: ProxyFactory,
) -> None:
    client = await seeded(make_proxy, dashboard={"count_cap": 2})
    over = await (await client.get("/requests/count?property=app=chat")).json()
    assert over == {"count": 2, "capped": True, "text": "2+"}
    at = await (await client.get("/requests/count?feedback=up")).json()
    assert at == {"count": 2, "capped": False, "text": "2"}
    under = await (await client.get("/requests/count?score=accuracy>90")).json()
    assert under == {"count": 1, "capped": False, "text": "1"}
    # The JSON API's count is not capped.
    tree = {"properties": {"app": {"equals": "chat"}}}
    exact = await client.post("/v1/request/count/query", json={"filter": tree})
    assert (await exact.json())["data"] == 3


async def test_the_drawer_shows_the_chat_as_text(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    prompt = "<img src=x onerror=alert(1)> </script><script>alert(2)</script>"
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    body = {
        "model": "gpt-4o-mini",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": prompt}, image]},
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "found it"},
        ],
    }
    sent = await client.post("/v1/chat/completions", json=body)
    request_id = sent.headers["helicone-id"]
    assert sent.status == 200
    html = await page(client, f"/requests/{request_id}/drawer")
    assert "<img" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "be brief" in html and "found it" in html and "lookup" in html
    assert 'href="https://example.com/cat.png"' in html
    assert "Echo: " in html  # the sandbox's answer
    assert "temperature" in html
    deep = await page(client, f"/requests/{request_id}?model=gpt-4o-mini")
    assert 'id="detail"' in deep and row_ids(deep) == [request_id]
    previews = re.findall(r'<td class="preview" title="[^"]*">([^<]*)</td>', deep)
    shown = html_escape(prompt, quote=False)
    assert previews == [shown, f"Echo: {shown}"]
    assert "no request with id" in await page(client, "/requests/nope/drawer", 404)


async def test_datasets_page_lists_counts_and_downloads(make_proxy: ProxyFactory) -> None:
    client = await seeded(make_proxy)
    created = await client.post(
        "/v1/helicone-dataset",
        json={"datasetName": "liked <b>", "filter": {"feedback": {"rating": {"equals": True}}}},
    )
    assert created.status == 201
    html = await page(client, "/datasets")
    assert "liked &lt;b&gt;" in html and "<b>" not in html
    assert re.search(r'<td class="num">2</td>', html)
    assert "/v1/export?dataset=liked+%3Cb%3E&amp;format=openai-chat" in html
    listed = await page(client, "/requests?dataset=liked+%3Cb%3E")
    assert row_ids(listed) == ["r5", "r1"]


async def test_keys_ask_for_a_sign_in(make_proxy: ProxyFactory) -> None:
    client = await seeded(make_proxy, auth={"proxy_keys": [KEY], "feedback_keys": [FEEDBACK_KEY]})
    response = await client.get("/requests?feedback=up", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert location.path == "/login" and location.query["next"] == "/requests?feedback=up"
    assert "r1" not in await page(client, "/requests/r1/drawer", 401)
    assert "r1" not in await page(client, "/requests/count", 401)
    assert 'name="key"' in await page(client, "/login")

    same = {"Origin": str(client.make_url("")).rstrip("/")}
    for key, status, says in [
        ("wrong", 401, "not one of"),
        (FEEDBACK_KEY, 403, "feedback-only"),
        ("", 400, "Type a proxy key"),
    ]:
        refused = await client.post("/login", data={"key": key}, headers=same)
        assert refused.status == status and says in await refused.text()
        assert "Set-Cookie" not in refused.headers
    cross = await client.post("/login", data={"key": KEY}, headers={"Origin": "http://evil.test"})
    assert cross.status == 403

    signed = await client.post(
        "/login",
        data={"key": KEY, "next": "/requests?feedback=up"},
        headers=same,
        allow_redirects=False,
    )
    assert signed.status == 303 and signed.headers["Location"] == "/requests?feedback=up"
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert row_ids(await page(client, "/requests?feedback=up")) == ["r5", "r1"]

    bounced = await client.post(
        "/login", data={"key": KEY, "next": "//evil.test/x"}, headers=same, allow_redirects=False
    )
    assert bounced.headers["Location"] == "/requests"


async def test_the_api_takes_the_cookie_only_from_the_same_origin(
    make_proxy: ProxyFactory,
) -> None:
    client = await seeded(make_proxy, auth={"proxy_keys": [KEY]})
    origin = str(client.make_url("")).rstrip("/")
    cookies = {"relaylog_key": KEY}
    rate = "/v1/request/r3/feedback"
    same = {"Origin": origin}
    ok = await client.post(rate, json={"rating": False}, headers=same, cookies=cookies)
    assert ok.status == 200, await ok.text()
    no_origin = await client.post(rate, json={"rating": True}, cookies=cookies)
    assert no_origin.status == 401
    foreign = await client.post(
        rate, json={"rating": True}, headers={"Origin": "http://localhost:3000"}, cookies=cookies
    )
    assert foreign.status == 403
    read = await client.get("/v1/request/r3", cookies=cookies)
    assert read.status == 200 and (await read.json())["data"]["feedback"]["rating"] is False
    cross_read = await client.get(
        "/v1/request/r3", cookies=cookies, headers={"Sec-Fetch-Site": "same-site"}
    )
    assert cross_read.status == 403
    wrong = await client.get("/v1/request/r3", cookies={"relaylog_key": "nope"})
    assert wrong.status == 401


async def test_a_slow_read_asks_to_narrow_the_time_range(make_proxy: ProxyFactory) -> None:
    client = await seeded(make_proxy, dashboard={"query_timeout_s": 1e-9})
    html = await page(client, "/requests?feedback=up", 503)
    assert "narrow the time range" in html
    assert '<option value="up" selected>' in html and '<option value="1h">' in html
    assert "narrow the time range" in await page(client, "/requests/count", 503)


async def test_the_dashboard_can_be_turned_off(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(dashboard={"enabled": False})
    response = await client.get("/requests")
    assert response.status == 404


async def test_the_api_call_shown_gives_the_same_rows(make_proxy: ProxyFactory) -> None:
    client = await seeded(make_proxy)
    html = await page(client, "/requests?feedback=up&score=accuracy>50&user=alice")
    curl = re.search(r'<pre id="curl">([^<]*)</pre>', html)
    assert curl is not None
    command = unescape(curl.group(1))
    assert command.startswith(f"curl -s {str(client.make_url('')).rstrip('/')}/v1/request/query")
    body = re.search(r"-d '(.*)'$", command)
    assert body is not None
    answer = await client.post("/v1/request/query", data=body.group(1),
                               headers={"Content-Type": "application/json"})  # fmt: skip
    payload = await answer.json()
    assert answer.status == 200, payload
    assert [row["request_id"] for row in payload["data"]] == row_ids(html) == ["r1"]


def said(html: str, role: str, text: str) -> bool:
    """Whether the drawer shows a `role` message whose first text starts with `text`."""
    message = rf'<li class="msg role-{role}">\s*<span class="role">{role}</span>\s*'
    return re.search(message + rf'<div class="text">{re.escape(text)}', html) is not None


async def test_the_drawer_shows_responses_and_streamed_answers(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    answered = await client.post(
        "/v1/responses",
        json={"model": "gpt-4o-mini", "instructions": "be kind", "input": "responses hello"},
    )
    assert answered.status == 200
    html = await page(client, f"/requests/{answered.headers['helicone-id']}/drawer")
    assert said(html, "system", "be kind") and said(html, "user", "responses hello")
    assert said(html, "assistant", "Echo: responses hello")
    assert not said(html, "assistant", "Echo: nothing like it")

    streamed = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "stream": True,
              "messages": [{"role": "user", "content": "streamed hello"}]},
    )  # fmt: skip
    await streamed.read()
    html = await page(client, f"/requests/{streamed.headers['helicone-id']}/drawer")
    assert said(html, "user", "streamed hello") and said(html, "assistant", "Echo: streamed hello")


async def test_the_drawer_says_an_omitted_body_was_not_stored(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "keep it out"}]}
    omitted = await client.post(
        "/v1/chat/completions",
        json=chat,
        headers={"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"},
    )
    assert omitted.status == 200
    html = await page(client, f"/requests/{omitted.headers['helicone-id']}/drawer")
    assert "The request body was not stored" in html and "The answer was not stored" in html
    assert "keep it out" not in html
    kept = await client.post("/v1/chat/completions", json=chat)
    html = await page(client, f"/requests/{kept.headers['helicone-id']}/drawer")
    assert "was not stored" not in html and said(html, "user", "keep it out")
