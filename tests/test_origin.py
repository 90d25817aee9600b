"""Host allowlist and cross-site policy: DNS rebinding and cross-site pages reach nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.helpers import Client, ProxyFactory, Upstream, port_of, settle, store_of

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret prompt"}]}
UPSTREAM_KEY = "sk-operator-secret"


async def logged_call(client: Client) -> str:
    answer = await client.post("/v1/chat/completions", json=CHAT)
    assert answer.status == 200
    await settle(client.app)
    return answer.headers["helicone-id"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/export", None),
        ("POST", "/v1/request/query", {"filter": "all"}),
        ("GET", "/v1/request/{id}", None),
        ("POST", "/v1/chat/completions", CHAT),
        ("GET", "/v1/models", None),
        ("GET", "/readyz", None),
    ],
)
async def test_a_rebound_host_is_421_and_never_forwarded(
    make_proxy: ProxyFactory, upstream: Upstream, method: str, path: str, body: Any
) -> None:
    proxy = await make_proxy(upstream={"api_key": UPSTREAM_KEY})
    request_id = await logged_call(proxy)
    upstream.received.clear()
    port = port_of(proxy)
    for host in [f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"]:
        answer = await proxy.request(
            method, path.replace("{id}", request_id), json=body, headers={"Host": host}
        )
        text = await answer.text()
        assert answer.status == 421, (host, text)
        assert "secret prompt" not in text
    assert upstream.received == []


async def test_loopback_names_with_the_listen_port_are_answered(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy()
    port = port_of(proxy)
    for host in [f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost.:{port}", f"[::1]:{port}"]:
        answer = await proxy.post("/v1/chat/completions", json=CHAT, headers={"Host": host})
        assert answer.status == 200, host
        assert (await proxy.get("/v1/export", headers={"Host": host})).status == 200, host
    for host in [f"localhost:{port + 1}", "localhost", f"[::2]:{port}", f"127.0.0.2:{port}"]:
        answer = await proxy.post("/v1/chat/completions", json=CHAT, headers={"Host": host})
        assert answer.status == 421, host
        assert answer.headers["Helicone-Status"] == "failed"
        assert (await answer.json())["error"]["code"] == "misdirected_request"
    assert len(upstream.received) == 4


async def test_configured_hostnames_are_answered_with_any_or_their_port(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(server={"hostnames": ["relaylog.internal", "lb.example:8443"]})
    for host, status in [
        ("relaylog.internal", 200),
        ("relaylog.internal:443", 200),
        ("RELAYLOG.internal:9000", 200),
        ("lb.example:8443", 200),
        ("lb.example", 421),
        ("lb.example:443", 421),
        ("other.internal", 421),
    ]:
        answer = await proxy.get("/v1/export", headers={"Host": host})
        assert answer.status == status, host


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/v1/request/{id}/feedback", "text/plain", b'{"rating": true}'),
        ("/v1/request/{id}/feedback", "application/x-www-form-urlencoded", b'{"rating": true}'),
        ("/v1/request/{id}/feedback", "multipart/form-data; boundary=x", b'{"rating": true}'),
        ("/v1/request/{id}/feedback", None, b'{"rating": true}'),
        ("/v1/request/{id}/score", "text/plain", b'{"scores": {"a": 1}}'),
        ("/v1/feedback", "text/plain", b'{"helicone-id": "{id}", "rating": true}'),
        ("/v1/helicone-dataset", "text/plain", b'{"datasetName": "planted"}'),
        ("/v1/helicone-dataset", "application/x-www-form-urlencoded", b""),
    ],
)
async def test_management_writes_need_a_json_content_type(
    make_proxy: ProxyFactory, path: str, content_type: str | None, body: bytes
) -> None:
    proxy = await make_proxy(feedback={"wait_ms": 0})
    request_id = await logged_call(proxy)
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = await proxy.post(
        path.replace("{id}", request_id),
        data=body.replace(b"{id}", request_id.encode()),
        headers=headers,
        skip_auto_headers=["Content-Type"],
    )
    assert answer.status == 415, await answer.text()
    store = store_of(proxy.app)
    assert await store.fetch("SELECT * FROM feedback") == []
    assert await store.fetch("SELECT * FROM scores") == []
    assert await store.fetch("SELECT * FROM datasets") == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_forwarded_json_calls_refuse_simple_body_types(
    make_proxy: ProxyFactory, upstream: Upstream, content_type: str | None
) -> None:
    proxy = await make_proxy(upstream={"api_key": UPSTREAM_KEY})
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = await proxy.post(
        "/v1/chat/completions",
        data=b'{"model": "gpt-4o-mini", "messages": []}',
        headers=headers,
        skip_auto_headers=["Content-Type"],
    )
    assert answer.status == 415
    assert (await answer.json())["error"]["code"] == "unsupported_media_type"
    assert "helicone-id" in answer.headers
    assert upstream.received == []


def upload() -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("purpose", "fine-tune")
    form.add_field("file", b'{"a": 1}\n', filename="data.jsonl")
    return form


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:1"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
async def test_cross_site_calls_are_403_and_never_spend_the_key(
    make_proxy: ProxyFactory, upstream: Upstream, headers: dict[str, str]
) -> None:
    proxy = await make_proxy(upstream={"api_key": UPSTREAM_KEY}, feedback={"wait_ms": 0})
    request_id = await logged_call(proxy)
    upstream.received.clear()
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/v1/chat/completions", {"json": CHAT}),
        ("POST", "/v1/files", {"data": upload()}),
        ("GET", "/v1/models", {}),
        ("POST", f"/v1/request/{request_id}/feedback", {"json": {"rating": False}}),
        ("POST", "/v1/helicone-dataset", {"json": {"datasetName": "planted"}}),
        ("GET", "/v1/export", {}),
        ("GET", f"/v1/request/{request_id}", {}),
    ]
    for method, path, kwargs in calls:
        answer = await proxy.request(method, path, headers=headers, **kwargs)
        text = await answer.text()
        assert answer.status == 403, (path, text)
        assert "secret prompt" not in text
    assert upstream.received == []
    assert await store_of(proxy.app).fetch("SELECT * FROM feedback") == []
    assert await store_of(proxy.app).fetch("SELECT * FROM datasets") == []


async def test_same_origin_pages_and_plain_clients_are_served(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(upstream={"api_key": UPSTREAM_KEY}, feedback={"wait_ms": 0})
    own = f"http://127.0.0.1:{port_of(proxy)}"
    for headers in [
        {},
        {"Origin": own, "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
    ]:
        answer = await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert answer.status == 200, headers
        request_id = answer.headers["helicone-id"]
        await settle(proxy.app)
        rated = await proxy.post(
            f"/v1/request/{request_id}/feedback", json={"rating": True}, headers=headers
        )
        assert rated.status == 200, headers
    assert [r.headers.get("Authorization") for r in upstream.received] == [
        f"Bearer {UPSTREAM_KEY}"
    ] * 3
    # A link followed from another site may open a read route; it cannot read the answer.
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert (await proxy.get("/v1/export", headers=link)).status == 200
    assert (await proxy.get("/v1/models", headers=link)).status == 403


async def test_preflights_on_forwarded_routes_are_answered_locally(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(upstream={"api_key": UPSTREAM_KEY})
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    refused = await proxy.options("/v1/chat/completions", headers=preflight)
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    plain = await proxy.options("/v1/chat/completions")
    assert plain.status == 204
    assert "Access-Control-Allow-Origin" not in plain.headers
    assert upstream.received == []


@pytest.mark.parametrize("listed", ["https://app.example", "*"])
async def test_feedback_origins_grant_feedback_and_scores_only(
    make_proxy: ProxyFactory, upstream: Upstream, listed: str
) -> None:
    proxy = await make_proxy(feedback={"wait_ms": 0, "cors_origins": [listed]})
    request_id = await logged_call(proxy)
    upstream.received.clear()
    page = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
    for path, body, status in [
        (f"/v1/request/{request_id}/feedback", {"rating": True}, 200),
        (f"/v1/request/{request_id}/score", {"scores": {"helpful": 1}}, 201),
    ]:
        ask = {**page, "Access-Control-Request-Method": "POST"}
        allowed = await proxy.options(path, headers=ask)
        assert allowed.status == 204
        assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
        answer = await proxy.post(path, json=body, headers=page)
        assert answer.status == status
        assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    detail = await proxy.get(f"/v1/request/{request_id}", headers=page)
    assert detail.status == 403
    assert "secret prompt" not in await detail.text()
    assert "Access-Control-Allow-Origin" not in detail.headers
    ask = {**page, "Access-Control-Request-Method": "GET"}
    assert (await proxy.options(f"/v1/request/{request_id}", headers=ask)).status == 403
    for path in ["/v1/export", "/v1/chat/completions"]:
        answer = await proxy.post(path, json=CHAT, headers=page)
        assert answer.status == 403, path
    assert upstream.received == []
    # A text/plain post from the listed page is still refused: it needs no preflight.
    plain = await proxy.post(
        f"/v1/request/{request_id}/feedback",
        data=b'{"rating": false}',
        headers={**page, "Content-Type": "text/plain"},
    )
    assert plain.status == 415
    rows = await store_of(proxy.app).fetch("SELECT rating FROM feedback")
    assert [bool(r["rating"]) for r in rows] == [True]


async def test_a_refused_host_is_logged_once_per_interval(
    make_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy()
    caplog.set_level("WARNING", logger="relaylog.origin")
    answers = await asyncio.gather(
        *(proxy.get("/v1/export", headers={"Host": f"rebound-{n}.example"}) for n in range(20))
    )
    assert {a.status for a in answers} == {421}
    warnings = [r for r in caplog.records if r.name == "relaylog.origin"]
    assert len(warnings) == 1
    assert "server.hostnames" in warnings[0].getMessage()
