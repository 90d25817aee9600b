"""Security: proxy and feedback-only keys, bind policy, target allowlist, no key anywhere."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.auth import KeyRing
from proxy.cli import main
from proxy.config import load_settings
from proxy.errors import ConfigError
from proxy.server import is_loopback
from tests.helpers import (
    Client,
    ProxyFactory,
    Served,
    Upstream,
    port_of,
    scrape,
    settle,
    start_serve,
    start_upstream,
    stored,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret test"}]}


def sha256(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"Helicone-Auth": f"Bearer {key}"}


@pytest.mark.parametrize("source", ["env", "file"])
async def test_several_proxy_keys_plain_or_hashed_from_env_or_file(
    aiohttp_client: Any, upstream: Upstream, tmp_path: Path, source: str
) -> None:
    keys = ["pk-plain-1", sha256("pk-hashed-2")]
    env = {"RELAYLOG_UPSTREAM_URL": upstream.url, "RELAYLOG_STORE_DB": str(tmp_path / "k.db")}
    config = tmp_path / "relaylog.toml"
    if source == "env":
        env["RELAYLOG_AUTH_PROXY_KEYS"] = ", ".join(keys)
        config.write_text("")
    else:
        config.write_text(f"[auth]\nproxy_keys = {keys!r}\n".replace("'", '"'))
    client: Client = await aiohttp_client(create_app(load_settings(str(config), environ=env)))
    for key, status in [
        ("pk-plain-1", 200),
        ("pk-hashed-2", 200),
        (sha256("pk-hashed-2"), 401),  # the stored hash is not a key
        ("pk-plain-", 401),
        ("pk-plain-1x", 401),
    ]:
        response = await client.post("/v1/chat/completions", json=CHAT, headers=bearer(key))
        assert response.status == status, key
    assert len(upstream.received) == 2


@pytest.mark.parametrize(
    "entry", ["sha256:abc", "sha256:" + "g" * 64, "sha256:" + "a" * 63, "sha256:" + "b" * 65]
)
def test_malformed_hash_is_refused_without_echoing_it(entry: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"RELAYLOG_AUTH_PROXY_KEYS": f"good-key, {entry}"})
    message = str(caught.value)
    assert "auth.proxy_keys" in message and "64 hex digits" in message
    assert entry not in message and "good-key" not in message


def test_every_configured_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """One constant-time comparison per key, whichever key matches, so timing tells nothing."""
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    ring = KeyRing(["k1", "k2", sha256("k3"), "k4"])
    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, expected in [("k1", True), ("k3", True), ("k4", True), ("nope", False)]:
        calls.clear()
        assert ring.matches(presented) is expected
        assert len(calls) == 4


async def test_feedback_keys_rate_but_neither_read_nor_forward(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(
        auth={"proxy_keys": ["pk-server"], "feedback_keys": [sha256("fk-browser")]},
        feedback={"wait_ms": 0},
    )
    answer = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={**bearer("pk-server"), "Helicone-Session-Id": "s1"},
    )
    request_id = answer.headers["helicone-id"]
    await settle(proxy.app)
    browser = {"Authorization": "Bearer fk-browser"}
    writes = [
        (f"/v1/request/{request_id}/feedback", {"rating": True}, 200),
        (f"/v1/request/{request_id}/score", {"scores": {"helpful": 1}}, 201),
        ("/v1/session/s1/feedback", {"rating": False}, 200),
        ("/v1/feedback", {"helicone-id": request_id, "rating": False}, 200),
        ("/v1/feedback/batch", {"items": [{"request_id": request_id, "rating": True}]}, 200),
    ]
    for path, body, status in writes:
        assert (await proxy.post(path, json=body, headers=browser)).status == status, path
        wrong = await proxy.post(path, json=body, headers={"Authorization": "Bearer fk-other"})
        assert wrong.status == 401, path
        assert (await proxy.post(path, json=body)).status == 401, path
    detail = await proxy.get(f"/v1/request/{request_id}", headers=browser)
    assert detail.status == 401
    refused = "a feedback-only key (auth.feedback_keys) can only post feedback and scores"
    assert (await detail.json())["error"].startswith(refused)
    assert (
        await proxy.get(f"/v1/request/{request_id}", headers={"Authorization": "Bearer pk-server"})
    ).status == 200
    received = len(upstream.received)
    forwarded = await proxy.post("/v1/chat/completions", json=CHAT, headers=bearer("fk-browser"))
    assert forwarded.status == 401
    assert (await forwarded.json())["error"]["message"] == (
        f"{refused}: send a proxy key in Helicone-Auth"
    )
    other = await proxy.post("/v1/chat/completions", json=CHAT, headers=bearer("fk-other"))
    assert (await other.json())["error"]["message"] == "invalid proxy key"
    assert len(upstream.received) == received
    assert (await stored(proxy.app, request_id))["feedback"]["rating"] is True


def test_feedback_keys_without_proxy_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="feedback_keys only restrict access"):
        load_settings(environ={"RELAYLOG_AUTH_FEEDBACK_KEYS": "fk"})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.usefixtures("bare_env")
def test_non_loopback_bind_needs_proxy_keys_not_feedback_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAYLOG_AUTH_FEEDBACK_KEYS", "fk")
    assert main(["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")]) == 2
    assert "feedback_keys" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--allow-unauthenticated"], {}),
        ([], {"RELAYLOG_AUTH_PROXY_KEYS": "pk-bind"}),
    ],
)
@pytest.mark.slow
async def test_non_loopback_bind_starts_with_keys_or_explicit_opt_out(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    served = await start_serve(
        tmp_path, tmp_path / "b.db", "--upstream", "sandbox", "--host", "0.0.0.0", *args, env=env
    )
    try:
        assert served.url.startswith("http://0.0.0.0:")
    finally:
        assert await served.stop() == 0


# Helicone-Target-Url


@pytest.fixture
async def other_upstream() -> AsyncIterator[Upstream]:
    """A second sandbox, to check which host a request reached."""
    started = await start_upstream(host="127.0.0.1")
    yield started
    await started.server.close()


def target_of(upstream: Upstream, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{upstream.server.port}"


async def test_target_url_reaches_only_an_allowlisted_host_and_port(
    make_proxy: ProxyFactory, upstream: Upstream, other_upstream: Upstream
) -> None:
    allowed = f"127.0.0.1:{other_upstream.server.port}"
    proxy = await make_proxy(
        upstream={"target_allowlist": [allowed], "api_key": "sk-default-upstream"}
    )
    answer = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": target_of(other_upstream)},
    )
    assert answer.status == 200
    assert [seen.path for seen in other_upstream.received] == ["/v1/chat/completions"]
    assert upstream.received == []
    row = await stored(proxy.app, answer.headers["helicone-id"])
    assert row["request_headers"]["helicone-target-url"] == target_of(other_upstream)

    refused = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": target_of(upstream)},
    )
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert (error["code"], error["param"]) == ("target_not_allowed", "Helicone-Target-Url")
    assert set(error) == {"message", "type", "param", "code"}
    assert upstream.received == [] and len(other_upstream.received) == 1
    assert (await stored(proxy.app, refused.headers["helicone-id"]))["outcome"] == "rejected"


async def test_target_url_never_gets_the_configured_upstream_key(
    make_proxy: ProxyFactory, custom_target: Callable[[], Any]
) -> None:
    url, headers_seen = await custom_target()
    proxy = await make_proxy(
        upstream={"target_allowlist": ["127.0.0.1"], "api_key": "sk-default-upstream"}
    )
    await proxy.post("/v1/models", headers={"Helicone-Target-Url": url})
    await proxy.post(
        "/v1/models", headers={"Helicone-Target-Url": url, "Authorization": "Bearer sk-own"}
    )
    assert [h.get("Authorization") for h in headers_seen] == [None, "Bearer sk-own"]


@pytest.fixture
async def custom_target() -> AsyncIterator[Callable[[], Any]]:
    servers: list[TestServer] = []

    async def start() -> tuple[str, list[dict[str, str]]]:
        seen: list[dict[str, str]] = []

        async def handler(request: web.Request) -> web.Response:
            seen.append(dict(request.headers))
            return web.json_response({"object": "list", "data": []})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", seen

    yield start
    for server in servers:
        await server.close()


async def test_host_entry_allows_any_port_of_that_host_only(
    make_proxy: ProxyFactory, upstream: Upstream, other_upstream: Upstream
) -> None:
    proxy = await make_proxy(upstream={"target_allowlist": ["LOCALHOST"]})
    ok = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": target_of(other_upstream, "localhost")},
    )
    assert ok.status == 200
    by_ip = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": target_of(other_upstream)},
    )
    assert by_ip.status == 400
    assert len(other_upstream.received) == 1 and upstream.received == []


@pytest.mark.parametrize(
    "value",
    [
        "http://user:pw@127.0.0.1:{port}",
        "ftp://127.0.0.1:{port}",
        "file:///etc/passwd",
        "127.0.0.1:{port}",
        "http://127.0.0.1:{port}/v1?x=1",
        "http://",
        "http://[::1",
        "",
    ],
)
async def test_malformed_target_urls_are_400_and_nothing_is_sent(
    make_proxy: ProxyFactory, upstream: Upstream, other_upstream: Upstream, value: str
) -> None:
    proxy = await make_proxy(upstream={"target_allowlist": ["127.0.0.1"]})
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": value.format(port=other_upstream.server.port)},
    )
    assert response.status == 400
    assert (await response.json())["error"]["param"] == "Helicone-Target-Url"
    assert upstream.received == [] and other_upstream.received == []


async def test_without_an_allowlist_every_target_is_refused(
    proxy: Client, upstream: Upstream, other_upstream: Upstream
) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Target-Url": target_of(other_upstream)},
    )
    assert response.status == 400
    assert upstream.received == [] and other_upstream.received == []


# No key anywhere

UPSTREAM_KEY = "sk-upstream-NEVER-LOG-1"
PROXY_KEY = "pk-proxy-NEVER-LOG-2"
HASHED_PROXY_KEY = "pk-hashed-NEVER-LOG-3"
FEEDBACK_KEY = "fk-feedback-NEVER-LOG-4"
CLIENT_KEY = "sk-client-NEVER-LOG-5"
WRONG_KEY = "pk-wrong-NEVER-LOG-6"
GATEWAY_KEY = "gk-gateway-NEVER-LOG-8"
SECRETS = [
    UPSTREAM_KEY,
    PROXY_KEY,
    HASHED_PROXY_KEY,
    FEEDBACK_KEY,
    CLIENT_KEY,
    WRONG_KEY,
    GATEWAY_KEY,
]
# Credentials outside the fixed denylist: in the query string and in gateway headers.
GATEWAY_QUERY = f"api-version=1&api-key={GATEWAY_KEY}&key={GATEWAY_KEY}&access_token={GATEWAY_KEY}"
GATEWAY_HEADERS = {
    name: GATEWAY_KEY
    for name in (
        "Ocp-Apim-Subscription-Key",
        "X-Auth-Token",
        "cf-aig-authorization",
        "x-portkey-api-key",
        "x-amz-security-token",
    )
}
# A prompt that is logged in the store but must never reach the process output.
PROMPT = "prompt-text-NEVER-ON-STDERR-9"


def db_files(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}


def assert_no_secret(where: str, data: bytes, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret.encode() not in data, f"{secret} found in {where}"
        assert hashlib.sha256(secret.encode()).hexdigest().encode() not in data, where


async def drive_traffic(served: Served, answers: list[bytes]) -> None:
    """Calls with every kind of key, right and wrong, on every route; keeps every answer."""

    async def keep(response: aiohttp.ClientResponse) -> int:
        body = await response.read()
        answers.append(repr(dict(response.headers)).encode() + body)
        return response.status

    url = served.url
    proxy_auth = {"Helicone-Auth": f"Bearer {PROXY_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={**proxy_auth, "Helicone-Request-Id": "sec-1"},
        ) as r:
            assert await keep(r) == 200
        async with session.post(
            f"{url}/v1/chat/completions?{GATEWAY_QUERY}",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]},
            headers={**proxy_auth, **GATEWAY_HEADERS, "Helicone-Request-Id": "sec-gateway"},
        ) as r:
            assert await keep(r) == 200
        async with session.post(
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={
                "Helicone-Auth": f"Bearer {HASHED_PROXY_KEY}",
                "Authorization": f"Bearer {CLIENT_KEY}",
                "api-key": CLIENT_KEY,
                "Cookie": f"s={CLIENT_KEY}",
            },
        ) as r:
            assert await keep(r) == 200
        for headers in [{"Helicone-Auth": f"Bearer {WRONG_KEY}"}, {"Helicone-Auth": WRONG_KEY}]:
            async with session.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers) as r:
                assert await keep(r) == 401
        async with session.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={**proxy_auth, "Helicone-Target-Url": f"http://u:{CLIENT_KEY}@example.com"},
        ) as r:
            assert await keep(r) == 400
        async with session.post(
            f"{url}/v1/chat/completions",
            json=CHAT,
            headers={"Authorization": f"Bearer {CLIENT_KEY}" + "x" * 9000},
        ) as r:
            assert await keep(r) == 400
        async with asyncio.timeout(10):
            while (await scrape(session, url))["relaylog_log_rows_written_total"] < 6:
                await asyncio.sleep(0.1)
        for key, status in [(FEEDBACK_KEY, 200), (PROXY_KEY, 200), (WRONG_KEY, 401)]:
            async with session.post(
                f"{url}/v1/request/sec-1/feedback",
                json={"rating": True, "comment": "fine"},
                headers={"Authorization": f"Bearer {key}"},
            ) as r:
                assert await keep(r) == status
        for path in ["/v1/request/sec-1", "/readyz", "/healthz", "/openapi.json"]:
            async with session.get(
                f"{url}{path}", headers={"Authorization": f"Bearer {PROXY_KEY}"}
            ) as r:
                assert await keep(r) == 200
        async with session.get(f"{url}/metrics") as r:
            await keep(r)


@pytest.mark.slow
async def test_no_key_in_database_wal_logs_or_answers(tmp_path: Path) -> None:
    db = tmp_path / "keys.db"
    env = {
        "RELAYLOG_UPSTREAM_API_KEY": UPSTREAM_KEY,
        "RELAYLOG_AUTH_PROXY_KEYS": f"{PROXY_KEY},{sha256(HASHED_PROXY_KEY)}",
        "RELAYLOG_AUTH_FEEDBACK_KEYS": FEEDBACK_KEY,
        "RELAYLOG_SERVER_ACCESS_LOG": "true",
    }
    served = await start_serve(tmp_path, db, "--upstream", "sandbox", env=env, verbose=True)
    answers: list[bytes] = []
    try:
        await drive_traffic(served, answers)
        running = db_files(db)
        assert f"{db.name}-wal" in running, "the WAL should hold the rows while serving"
    finally:
        assert await served.stop() == 0
    for name, data in {**running, **db_files(db)}.items():
        assert_no_secret(name, data, SECRETS)
    assert_no_secret("process logs", served.logs(), [*SECRETS, PROMPT])
    assert b"POST /v1/chat/completions?api-version=1&api-key=[redacted]" in served.logs()
    assert PROMPT.encode() in db_files(db)[db.name], "the prompt is logged in the store"
    assert b"malformed request (LineTooLong, 400)" in served.logs()
    # aiohttp echoes the start of an over-long header line to the client that sent it.
    assert_no_secret("API answers", b"".join(answers), [s for s in SECRETS if s != CLIENT_KEY])
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 6
        query, headers = conn.execute(
            "SELECT query, request_headers FROM requests WHERE id = 'sec-gateway'"
        ).fetchone()
    assert query == "api-version=1&api-key=[redacted]&key=[redacted]&access_token=[redacted]"
    stored = orjson.loads(headers)
    assert {n.lower(): stored.get(n.lower()) for n in GATEWAY_HEADERS} == {
        n.lower(): "[redacted]" for n in GATEWAY_HEADERS
    }


def test_upstream_url_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "sk-in-url-NEVER-LOG-7"
    url = f"http://relay:{secret}@127.0.0.1:9/v1"
    assert main(["serve", "--upstream", url, "--db", str(tmp_path / "url.db")]) == 2
    err = capsys.readouterr().err
    assert "must not carry credentials" in err
    assert secret not in err
    assert not (tmp_path / "url.db").exists()


async def raw_call(port: int, path: str, headers: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request with header bytes as given (not necessarily UTF-8)."""
    body = b'{"model": "gpt-4o-mini", "messages": [], "rating": true}'
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + headers
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("key", [b"\xff\xfe", b"pk-server\xe9", b"\xc3\x28"])
async def test_a_non_utf8_key_is_a_401_and_the_call_is_logged(
    make_proxy: ProxyFactory, upstream: Upstream, key: bytes
) -> None:
    proxy = await make_proxy(auth={"proxy_keys": ["pk-server"]})
    status, answer = await raw_call(
        port_of(proxy),
        "/v1/chat/completions",
        b"Helicone-Request-Id: odd-key\r\nHelicone-Auth: Bearer " + key + b"\r\n",
    )
    assert status == 401, answer[:300]
    assert b"Traceback" not in answer
    row = await stored(proxy.app, "odd-key")
    assert (row["status"], row["outcome"]) == (401, "rejected")
    status, answer = await raw_call(
        port_of(proxy), "/v1/export", b"Authorization: Bearer " + key + b"\r\n"
    )
    assert status in (401, 405), answer[:300]
    status, _ = await raw_call(
        port_of(proxy), "/v1/request/odd-key/feedback", b"Authorization: Bearer " + key + b"\r\n"
    )
    assert status == 401
    assert upstream.received == []
