"""Forwarding: header policy, errors in OpenAI's shape, streaming tee outcomes, what is stored."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy.gateway.headers import TRUNCATED
from storage import open_store
from tests.helpers import (
    AppUpstream,
    Client,
    ProxyFactory,
    Served,
    Upstream,
    port_of,
    settle,
    start_serve,
    store_of,
    stored,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True}


async def test_helicone_headers_are_consumed_and_hop_by_hop_dropped(
    proxy: Any, upstream: Upstream
) -> None:
    response = await proxy.post(
        "/v1/chat/completions?api-version=2024-01",
        json=CHAT,
        headers={
            "Authorization": "Bearer sk-client",
            "Helicone-Property-Feature": "search",
            "Helicone-Auth": "Bearer ignored-when-no-keys",
            "Proxy-Authorization": "Basic x",
            "TE": "trailers",
            "X-Custom": "kept",
        },
    )
    assert response.status == 200
    received = upstream.received[-1]
    assert received.path == "/v1/chat/completions"
    assert received.query == "api-version=2024-01"
    assert received.headers["Authorization"] == "Bearer sk-client"
    assert received.headers["X-Custom"] == "kept"
    assert received.headers["Accept-Encoding"] == "identity"
    lowered = {k.lower() for k in received.headers}
    assert not {h for h in lowered if h.startswith("helicone-")}
    assert not lowered & {"proxy-authorization", "te"}
    assert response.headers["helicone-id"]
    assert "Transfer-Encoding" not in response.headers or response.headers["Transfer-Encoding"]


async def test_upstream_key_added_only_when_client_sends_none(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(upstream={"api_key": "sk-configured"})
    await proxy.post("/v1/chat/completions", json=CHAT)
    assert upstream.received[-1].headers["Authorization"] == "Bearer sk-configured"
    await proxy.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-own"})
    assert upstream.received[-1].headers["Authorization"] == "Bearer sk-own"


BAD_IDS = ["has space", "-leading-dash", "x" * 129, "semi;colon", "ünicode", "quote'"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_invalid_request_id_is_replaced_and_the_call_forwarded(
    proxy: Any, upstream: Upstream, bad_id: str
) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Request-Id": bad_id.encode().decode("latin-1")},
    )
    assert response.status == 200
    assert len(upstream.received) == 1
    new_id = response.headers["helicone-id"]
    assert new_id in response.headers["Relaylog-Warning"]
    row = await stored(proxy.app, new_id)
    assert row["outcome"] == "ok"
    assert "Helicone-Request-Id" in row["warnings"][0]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_invalid_request_id_is_refused_before_forwarding_when_strict(
    make_proxy: ProxyFactory, upstream: Upstream, bad_id: str
) -> None:
    proxy = await make_proxy(server={"strict_headers": True})
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Request-Id": bad_id.encode().decode("latin-1")},
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "Helicone-Request-Id"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert response.headers["Helicone-Status"] == "failed"
    assert upstream.received == []
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["outcome"] == "rejected"
    assert row["status"] == 400


@pytest.mark.parametrize(
    "good_id", ["ticket-42-1700000000", "7f1c2a9e-0d7b-4c1e-9a8e-2f4b6c8d0e1f", "a", "user@x:1.2_3"]
)
async def test_valid_request_ids_are_kept_verbatim(proxy: Any, good_id: str) -> None:
    response = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Request-Id": good_id}
    )
    assert response.headers["helicone-id"] == good_id
    assert (await stored(proxy.app, good_id))["outcome"] == "ok"


async def test_reused_id_replaces_the_exchange(proxy: Any) -> None:
    for text in ("first", "second"):
        body = {**CHAT, "messages": [{"role": "user", "content": text}]}
        await proxy.post(
            "/v1/chat/completions",
            json=body,
            headers={"Helicone-Request-Id": "same-id", "Helicone-Property-Try": text},
        )
    row = await stored(proxy.app, "same-id")
    assert row["response_body"]["choices"][0]["message"]["content"] == "Echo: second"
    assert row["properties"] == {"try": "second"}
    props = await store_of(proxy.app).fetch("SELECT request_id, key, value FROM request_properties")
    assert props == [{"request_id": "same-id", "key": "try", "value": "second"}]


BAD_LOGGING_HEADERS = [
    pytest.param({"Helicone-Property-Big": "x" * 1025}, "Helicone-Property-Big", id="big-property"),
    pytest.param({"Helicone-Omit-Request": "maybe"}, "Helicone-Omit-Request", id="unclear-flag"),
    pytest.param(
        {f"Helicone-Property-P{i}": "v" for i in range(65)},
        "Helicone-Property-",
        id="65-properties",
    ),
    pytest.param({"Helicone-User-Id": "u" * 1025}, "Helicone-User-Id", id="long-user"),
    pytest.param({"Helicone-Request-Id": "order 42/7"}, "Helicone-Request-Id", id="bad-id"),
]


@pytest.mark.parametrize(("headers", "param"), BAD_LOGGING_HEADERS)
async def test_bad_logging_headers_never_stop_the_call(
    proxy: Any, upstream: Upstream, headers: dict[str, str], param: str
) -> None:
    response = await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status == 200, await response.text()
    assert len(upstream.received) == 1
    warning = response.headers["Relaylog-Warning"]
    assert param.lower() in warning.lower()
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["outcome"] == "ok"
    assert len(row["warnings"]) == 1 and param.lower() in row["warnings"][0].lower()


async def test_repaired_logging_headers_are_stored_truncated_or_replaced(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={
            "Helicone-Request-Id": "order 42/7",
            "Helicone-Property-Big": "é" * 1000,
            "Helicone-User-Id": "u" * 2000,
            "Helicone-Omit-Request": "maybe",
            **{f"Helicone-Property-P{i}": "v" for i in range(70)},
        },
    )
    assert response.status == 200
    request_id = response.headers["helicone-id"]
    assert request_id != "order 42/7" and len(request_id) == 36
    row = await stored(proxy.app, request_id)
    big = row["properties"]["big"]
    assert big.endswith(TRUNCATED) and len(big.encode()) <= 1024 and big.startswith("é")
    assert len(row["properties"]) == 64
    assert row["user_id"].endswith(TRUNCATED) and len(row["user_id"]) == 1024
    assert row["request_body"] is None  # an unclear omit flag does not store the body
    assert len(row["warnings"]) == 5
    assert any(request_id in w and "'order 42/7'" in w for w in row["warnings"])


@pytest.mark.parametrize(("headers", "param"), BAD_LOGGING_HEADERS)
async def test_strict_headers_refuse_bad_logging_headers(
    make_proxy: ProxyFactory, upstream: Upstream, headers: dict[str, str], param: str
) -> None:
    proxy = await make_proxy(server={"strict_headers": True})
    response = await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status == 400
    assert (await response.json())["error"]["param"].lower().startswith(param.lower())
    assert upstream.received == []


async def test_good_headers_carry_no_warning(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Property-App": "chat"}
    )
    assert "Relaylog-Warning" not in response.headers
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["warnings"] is None


async def test_upstream_errors_pass_through_verbatim(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Sandbox-Fault": "status=429, retry_after=7"},
    )
    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    assert response.headers["Helicone-Status"] == "failed"
    body = await response.json()
    assert body["error"]["code"] == "rate_limit_exceeded"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (429, "upstream_error")
    assert row["response_body"]["error"]["message"] == "sandbox fault 429"


async def test_unreachable_upstream_gives_502_and_a_row(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"url": "http://127.0.0.1:9/v1"})
    response = await proxy.post("/v1/chat/completions", json=CHAT)
    assert response.status == 502
    error = (await response.json())["error"]
    assert error["code"] == "upstream_unreachable"
    # Where the upstream lives is not the client's business: no host, no port.
    assert "127.0.0.1" not in error["message"] and ":9" not in error["message"]
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (502, "upstream_unreachable")
    assert "127.0.0.1:9" in row["error"]
    assert row["request_body"]["messages"][0]["content"] == "hello"


async def test_slow_upstream_gives_504_and_a_row(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"read_timeout_s": 0.2})
    response = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Sandbox-Fault": "delay_ms=2000"}
    )
    assert response.status == 504
    assert response.headers["Helicone-Status"] == "failed"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (504, "timeout")


async def test_upstream_silent_mid_stream_is_a_timeout_with_partial_body(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(upstream={"read_timeout_s": 0.3})
    response = await proxy.post(
        "/v1/chat/completions", json=STREAM, headers={"Sandbox-Fault": "chunk_delay_ms=1000"}
    )
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["outcome"] == "timeout"
    assert row["response_body"]["choices"][0]["message"]["role"] == "assistant"


async def test_upstream_cut_mid_stream_is_stream_incomplete(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json={**STREAM, "messages": [{"role": "user", "content": "one two three four"}]},
        headers={"Sandbox-Fault": "cut_after=3"},
    )
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["outcome"] == "stream_incomplete"
    assert row["response_body"]["choices"][0]["message"]["content"] == "Echo: one "
    assert row["finish_reason"] is None


async def test_client_gone_mid_stream_is_client_cancelled_with_partial_body(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json={**STREAM, "messages": [{"role": "user", "content": "a b c d e f g h"}]},
        headers={"Sandbox-Fault": "chunk_delay_ms=100", "Helicone-Request-Id": "gone-1"},
    )
    assert response.status == 200
    first = await response.content.readuntil(b"\n\n")
    assert first.startswith(b"data: ")
    await asyncio.sleep(0.25)
    response.close()
    row = await stored(proxy.app, "gone-1")
    assert row["outcome"] == "client_cancelled"
    content = row["response_body"]["choices"][0]["message"]["content"]
    full = "Echo: a b c d e f g h"
    assert content and full.startswith(content) and content != full
    assert row["latency_ms"] < 1000


async def test_oversized_body_gives_413_without_forwarding(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(server={"max_body_bytes": 2048})
    response = await proxy.post("/v1/chat/completions", data=b"x" * 5000)
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "body_too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"y" * 1000

    chunked = await proxy.post("/v1/chat/completions", data=chunks())
    assert chunked.status == 413
    assert upstream.received == []
    await settle(proxy.app)


async def test_invalid_json_is_forwarded_as_is_and_logged_raw(
    proxy: Any, upstream: Upstream
) -> None:
    response = await proxy.post(
        "/v1/chat/completions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert upstream.received[-1].body == b"{not json"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["request_body"] == "{not json"
    assert row["request_model"] is None


async def test_omit_headers_keep_metrics_but_not_bodies(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Helicone-Omit-Request": "true", "Helicone-Omit-Response": "true"},
    )
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["request_body"] is None and row["response_body"] is None
    assert row["total_tokens"] is not None
    assert row["model"] == "gpt-4o-mini"


async def test_stream_usage_injection_hidden_from_client(proxy: Any, upstream: Upstream) -> None:
    response = await proxy.post(
        "/v1/chat/completions", json=STREAM, headers={"Helicone-Stream-Usage": "true"}
    )
    text = (await response.read()).decode()
    sent = orjson.loads(upstream.received[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    assert '"usage":{' not in text.replace(" ", "")
    assert text.rstrip().endswith("data: [DONE]")
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["prompt_tokens"] is not None and row["completion_tokens"] is not None


async def test_stream_usage_kept_for_client_that_asked(proxy: Any) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json={**STREAM, "stream_options": {"include_usage": True}},
        headers={"Helicone-Stream-Usage": "true"},
    )
    assert '"usage":{' in (await response.read()).decode().replace(" ", "")


async def test_redirects_are_not_followed_and_methods_pass_through(
    make_proxy: ProxyFactory, app_upstream: AppUpstream
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/elsewhere"})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(
            {"method": request.method, "query": request.rel_url.raw_query_string}
        )

    app = web.Application()
    app.router.add_route("*", "/v1/files/redirect", redirect)
    app.router.add_route("*", "/v1/files/{name}", echo)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)})
    response = await proxy.get("/v1/files/redirect", allow_redirects=False)
    assert response.status == 307
    assert response.headers["Location"] == "http://127.0.0.1:9/elsewhere"
    for method in ("GET", "DELETE", "PUT", "PATCH"):
        answer = await proxy.request(method, "/v1/files/abc?limit=2&after=x%20y")
        assert await answer.json() == {"method": method, "query": "limit=2&after=x%20y"}
        assert answer.headers["helicone-id"]


async def test_large_non_streamed_answer_is_streamed_through(
    make_proxy: ProxyFactory, app_upstream: AppUpstream
) -> None:
    payload = b'{"data": "' + b"z" * (3 * 1024 * 1024) + b'"}'

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(payload), 65536):
            await response.write(payload[start : start + 65536])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/v1/big", big)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)})
    response = await proxy.get("/v1/big")
    assert await response.read() == payload
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["response_bytes"] == len(payload)


async def test_proxy_keys_guard_forwarded_routes(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(auth={"proxy_keys": ["pk-one", "pk-two"]})
    missing = await proxy.post("/v1/chat/completions", json=CHAT)
    assert missing.status == 401
    assert missing.headers["helicone-id"]
    assert (await missing.json())["error"]["type"] == "authentication_error"
    wrong = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Auth": "Bearer pk-three"}
    )
    assert wrong.status == 401
    assert upstream.received == []
    ok = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Auth": "Bearer pk-two"}
    )
    assert ok.status == 200


async def test_no_credential_reaches_the_store(make_proxy: ProxyFactory, tmp_path: Path) -> None:
    secrets = ["sk-upstream-SECRET-1", "pk-proxy-SECRET-2", "sk-client-SECRET-3", "cookie-SECRET-4"]
    proxy = await make_proxy(upstream={"api_key": secrets[0]}, auth={"proxy_keys": [secrets[1]]})
    auth = {"Helicone-Auth": f"Bearer {secrets[1]}", "Cookie": f"session={secrets[3]}"}
    await proxy.post("/v1/chat/completions", json=CHAT, headers=auth)
    await proxy.post(
        "/v1/chat/completions",
        json=STREAM,
        headers={**auth, "Authorization": f"Bearer {secrets[2]}", "api-key": secrets[2]},
    )
    await proxy.post("/v1/chat/completions", json=CHAT, headers={"Helicone-Auth": "Bearer wrong"})
    await settle(proxy.app)
    await store_of(proxy.app).close()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("relaylog.db")]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, f"{secret} found in {path.name}"


def big_answer_app() -> web.Application:
    """An upstream answering `X-Size` bytes of text in 64 KiB pieces: SSE events or one JSON."""

    async def chat(request: web.Request) -> web.StreamResponse:
        size = int(request.headers["X-Size"])
        piece = "y" * 65_536
        usage = {"prompt_tokens": 7, "completion_tokens": size // 4, "total_tokens": 7 + size // 4}
        if not (await request.json()).get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"model": "gpt-4o-mini", "choices": [{"message": {"content": "')
            for _ in range(size // len(piece)):
                await response.write(piece.encode())
            await response.write(b'"}}], "usage": ' + orjson.dumps(usage) + b"}")
            return response
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {"id": "c", "model": "gpt-4o-mini"}
        for _ in range(size // len(piece)):
            delta = {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
            await response.write(b"data: " + orjson.dumps(delta) + b"\n\n")
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(b"data: " + orjson.dumps(done) + b"\n\n")
        tail = {**base, "choices": [], "usage": usage}
        await response.write(b"data: " + orjson.dumps(tail) + b"\n\ndata: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
async def test_a_large_answer_reaches_the_client_whole_and_the_log_keeps_a_bounded_part(
    make_proxy: ProxyFactory, app_upstream: AppUpstream, stream: bool
) -> None:
    cap = 1024 * 1024
    proxy = await make_proxy(
        upstream={"url": await app_upstream(big_answer_app())},
        recorder={"max_body_bytes": cap},
    )

    async def call(size: int) -> tuple[str, int, int]:
        """The request id, the bytes the client got, and the peak traced memory meanwhile."""
        tracemalloc.start()
        try:
            answer = await proxy.post(
                "/v1/chat/completions",
                json={**CHAT, "stream": stream},
                headers={"X-Size": str(size)},
            )
            received = 0
            async for data in answer.content.iter_any():
                received += len(data)
            await settle(proxy.app)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return answer.headers["helicone-id"], received, peak

    _, _, small_peak = await call(2 * cap)
    request_id, received, large_peak = await call(24 * cap)
    assert received > 24 * cap
    # Twelve times the answer may not cost twelve times the memory: what is kept is bounded.
    assert large_peak < 3 * small_peak, (small_peak, large_peak)
    row = await stored(proxy.app, request_id)
    assert row["response_bytes"] == received
    assert len(row["response_body"]) <= cap + 4096
    assert "truncated" in row["error"] or "not kept" in row["error"]
    if stream:
        # Usage arrives after the text and is kept even though the text was cut.
        assert row["prompt_tokens"] == 7 and row["finish_reason"] == "stop"
        assert row["outcome"] == "ok"


async def raw_status(port: int, request_line: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_line + b"\r\nHost: localhost:%d\r\nConnection: close\r\n\r\n" % port)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/../../internal/admin",
        "/v1/%2e%2e/internal",
        "/v1/.%2E/internal",
        "/v1/files/%2E%2E%2Finternal",
        "/v1/files/..%5Cinternal",
        "/v1/./models",
    ],
)
async def test_dot_segments_are_refused_and_never_forwarded(
    make_proxy: ProxyFactory, upstream: Upstream, path: str
) -> None:
    proxy = await make_proxy(upstream={"api_key": "sk-operator"})
    assert await raw_status(port_of(proxy), f"GET {path} HTTP/1.1".encode()) == 400
    assert upstream.received == []
    # Dots inside a segment are ordinary characters.
    assert await raw_status(port_of(proxy), b"GET /v1/files/file-a..b.jsonl HTTP/1.1") == 404
    assert [r.path for r in upstream.received] == ["/v1/files/file-a..b.jsonl"]


@pytest.mark.parametrize("method", ["TRACE", "CONNECT"])
async def test_trace_and_connect_are_not_forwarded(
    make_proxy: ProxyFactory, upstream: Upstream, method: str
) -> None:
    proxy = await make_proxy(upstream={"api_key": "sk-operator"})
    status = await raw_status(port_of(proxy), f"{method} /v1/models HTTP/1.1".encode())
    # aiohttp reads a CONNECT's tunnel as a body without a type, refused before the method.
    assert status == 405 if method == "TRACE" else status in (405, 415)
    assert upstream.received == []


async def test_expect_and_connection_named_headers_are_not_forwarded(
    proxy: Client, upstream: Upstream
) -> None:
    answer = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={
            "Expect": "100-continue",
            "Connection": "keep-alive, X-Hop, x-other",
            "X-Hop": "secret-for-the-next-hop",
            "X-Other": "1",
            "X-Kept": "yes",
        },
    )
    assert answer.status == 200
    sent = {k.lower() for k in upstream.received[-1].headers}
    assert "expect" not in sent and "x-hop" not in sent and "x-other" not in sent
    assert "x-kept" in sent


async def test_a_gzip_body_is_forwarded_decoded_and_a_bomb_is_a_413(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(server={"max_body_bytes": 64 * 1024})
    body = orjson.dumps(CHAT)
    answer = await proxy.post(
        "/v1/chat/completions",
        data=gzip.compress(body),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status == 200, await answer.text()
    received = upstream.received[-1]
    assert received.body == body
    assert "content-encoding" not in {k.lower() for k in received.headers}
    bomb = gzip.compress(b" " * (64 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    refused = await proxy.post(
        "/v1/chat/completions",
        data=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert refused.status == 413
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": -600_000_000, "completion_tokens": 10, "total_tokens": 10},
        {"prompt_tokens": 10**30, "completion_tokens": 2**63, "total_tokens": 1.5},
        {"prompt_tokens": "12", "completion_tokens": True, "total_tokens": None},
    ],
    ids=["negative", "oversized", "not-integers"],
)
async def test_unbelievable_usage_is_ignored_and_the_bodies_are_kept(
    make_proxy: ProxyFactory, app_upstream: AppUpstream, store_url: str, usage: dict[str, Any]
) -> None:
    async def chat(request: web.Request) -> web.Response:
        body = {
            "model": "gpt-4o",
            "choices": [{"index": 0, "message": {"content": "kept answer"}}],
            "usage": usage,
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)}, store={"db": store_url})
    answer = await proxy.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4o"})
    assert answer.status == 200
    row = await stored(proxy.app, answer.headers["helicone-id"])
    assert row["prompt_tokens"] is None
    assert row["completion_tokens"] == (10 if usage["completion_tokens"] == 10 else None)
    assert row["cost_usd"] is None or row["cost_usd"] >= 0
    assert row["response_body"]["choices"][0]["message"]["content"] == "kept answer"
    assert row["request_body"]["messages"][0]["content"] == "hello"
    assert "usage ignored" in row["error"]


async def _send_half_a_body(port: int, request_id: str) -> None:
    """POST a chat call that promises 1,000 body bytes, send 100, and hang up."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
        + f"Helicone-Request-Id: {request_id}\r\n\r\n".encode()
        + b'{"model": "gpt-4o-mini", "messages": ['
        + b" " * 62
    )
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()


async def test_an_upload_the_client_abandons_is_logged(proxy: Any, upstream: Upstream) -> None:
    await _send_half_a_body(port_of(proxy), "abandoned-upload")
    # The handler notices the hang-up a moment after the socket closes.
    for _ in range(250):
        await settle(proxy.app)
        if await store_of(proxy.app).request_exists("abandoned-upload"):
            break
        await asyncio.sleep(0.02)
    row = await stored(proxy.app, "abandoned-upload")
    assert row["outcome"] == "client_cancelled"
    assert "disconnected after 100 of 1000 body bytes" in row["error"]
    assert upstream.received == []


async def _abandon_then_cut(served: Served) -> None:
    """An abandoned upload, then a stream still running when relaylog is told to stop."""
    port = int(served.url.rsplit(":", 1)[1])
    await _send_half_a_body(port, "abandoned-serve")
    async with aiohttp.ClientSession() as session:
        # The server notices the hang-up a moment after the socket closes.
        for _ in range(100):
            async with session.get(f"{served.url}/v1/request/abandoned-serve") as detail:
                if detail.status == 200:
                    break
            await asyncio.sleep(0.05)
        assert detail.status == 200, served.logs().decode()
        async with session.post(
            f"{served.url}/v1/chat/completions",
            json=STREAM,
            headers={"Helicone-Request-Id": "cut-by-shutdown"},
        ) as response:
            assert response.status == 200
            await response.content.readany()
            served.process.send_signal(signal.SIGTERM)
            # The client keeps reading until relaylog ends the stream after its shutdown timeout.
            with contextlib.suppress(aiohttp.ClientError):
                async for _ in response.content.iter_any():
                    pass


@pytest.mark.slow
async def test_abandoned_upload_and_shutdown_cut_stream_under_relaylog_serve(
    tmp_path: Path, app_upstream: AppUpstream
) -> None:
    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        while True:
            chunk = {"choices": [{"index": 0, "delta": {"content": "x"}}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await asyncio.sleep(0.05)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    url = await app_upstream(app)
    db = tmp_path / "relaylog.db"
    served = await start_serve(
        tmp_path, db, "--upstream", url, env={"RELAYLOG_SERVER_SHUTDOWN_TIMEOUT_S": "1"}
    )
    try:
        await _abandon_then_cut(served)
        assert await asyncio.wait_for(served.process.wait(), 30) == 0, served.logs().decode()
    finally:
        await served.kill()
    store = open_store(str(db))
    await store.open()
    try:
        cut = await store.get_request("cut-by-shutdown")
        abandoned = await store.get_request("abandoned-serve")
    finally:
        await store.close()
    assert cut is not None and abandoned is not None, served.logs().decode()
    assert cut["outcome"] == "stream_incomplete"
    assert "shut down before the answer ended" in cut["error"]
    assert cut["response_body"]["choices"][0]["message"]["content"].startswith("x")
    assert abandoned["outcome"] == "client_cancelled"
    assert b"client disconnected after 100 of 1000 body bytes" in served.logs()
