"""Injected faults: upstream, client, store and process. Every request served, every row kept."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from storage import Row
from storage.errors import StoreError
from tests.helpers import (
    AppUpstream,
    Client,
    ProxyFactory,
    Upstream,
    port_of,
    scrape,
    settle,
    start_serve,
    store_of,
    stored,
)

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "fault test"}]}
STREAM = {**CHAT, "stream": True}


async def count_rows(client: Client) -> int:
    rows = await store_of(client.app).fetch("SELECT count(*) AS n FROM requests")
    return int(rows[0]["n"])


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """A bare TCP server with a given connection handler; returns its /v1 base URL."""
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []

    async def start(
        handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> str:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handle(reader, writer)

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    yield start
    for writer in writers:
        writer.close()
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


# Upstream faults


@pytest.mark.parametrize("body", [CHAT, STREAM])
async def test_upstream_that_accepts_and_never_answers_is_504_within_the_timeout(
    make_proxy: ProxyFactory, raw_upstream: Callable[..., Awaitable[str]], body: dict[str, Any]
) -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    proxy = await make_proxy(
        upstream={"url": await raw_upstream(never_answer), "read_timeout_s": 0.5}
    )
    async with asyncio.timeout(10):
        response = await proxy.post("/v1/chat/completions", json=body)
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "upstream_timeout"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (504, "timeout")
    assert 500 <= row["latency_ms"] < 5000


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_upstream_error_answers_pass_through_byte_for_byte(
    proxy: Client, upstream: Upstream, status: int
) -> None:
    fault = {"Sandbox-Fault": f"status={status}, retry_after=3"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{upstream.url}/chat/completions", json=CHAT, headers=fault) as direct,
    ):
        direct_body = await direct.read()
        direct_type = direct.headers["Content-Type"]
    response = await proxy.post("/v1/chat/completions", json=CHAT, headers=fault)
    assert response.status == status
    assert await response.read() == direct_body
    assert response.headers["Content-Type"] == direct_type
    assert response.headers["Retry-After"] == "3"
    assert response.headers["Helicone-Status"] == "failed"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (status, "upstream_error")
    assert row["response_body"] == orjson.loads(direct_body)


async def test_upstream_closing_mid_body_is_502_and_logged(
    make_proxy: ProxyFactory, raw_upstream: Callable[..., Awaitable[str]]
) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            b'{"id": "chatcmpl-cut", "choi'
        )
        await writer.drain()
        writer.close()

    proxy = await make_proxy(upstream={"url": await raw_upstream(cut)})
    response = await proxy.post("/v1/chat/completions", json=CHAT)
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "upstream_incomplete"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (502, "stream_incomplete")


async def test_non_json_answer_is_passed_through_and_logged_raw(proxy: Client) -> None:
    response = await proxy.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={"Sandbox-Fault": "raw=<html>502 Bad Gateway from a load balancer</html>"},
    )
    assert response.status == 200
    assert await response.text() == "<html>502 Bad Gateway from a load balancer</html>"
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["response_body"] == "<html>502 Bad Gateway from a load balancer</html>"
    assert row["response_model"] is None and row["total_tokens"] is None


MALFORMED_SSE = [
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n',
    b"data: {not json\n\n",
    b": keep-alive comment\n\n",
    b"data: \xff\xfe\x00 binary\n\n",
    b"no field name here\n\n",
    b'data: {"id":"c1","object":"chat.completion.chunk","model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


async def test_malformed_sse_is_passed_through_and_counted_in_the_row(
    make_proxy: ProxyFactory, app_upstream: AppUpstream
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in MALFORMED_SSE:
            await response.write(event)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", stream)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)})
    response = await proxy.post("/v1/chat/completions", json=STREAM)
    assert await response.read() == b"".join(MALFORMED_SSE)
    row = await stored(proxy.app, response.headers["helicone-id"])
    assert row["outcome"] == "ok"
    assert row["response_body"]["choices"][0]["message"]["content"] == "Hello"
    assert "2 malformed SSE event(s)" in row["error"]


# Client faults


async def test_client_gone_mid_stream_cancels_the_upstream_call_promptly(
    make_proxy: ProxyFactory, app_upstream: AppUpstream
) -> None:
    upstream_closed = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
        try:
            for _ in range(400):
                await response.write(chunk)
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.CancelledError):
            upstream_closed.set()
            raise
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", endless)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)})
    response = await proxy.post(
        "/v1/chat/completions", json=STREAM, headers={"Helicone-Request-Id": "gone-upstream"}
    )
    await response.content.readuntil(b"\n\n")
    response.close()
    await asyncio.wait_for(upstream_closed.wait(), 5)
    row = await stored(proxy.app, "gone-upstream")
    assert row["outcome"] == "client_cancelled"
    assert row["latency_ms"] < 10_000


async def test_slow_upload_is_cut_off_and_other_clients_are_unaffected(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(server={"body_timeout_s": 0.5})
    port = port_of(proxy)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:%d\r\n"
        % port
        + b"Content-Type: application/json\r\nContent-Length: 1000\r\n"
        b"Helicone-Request-Id: slow-upload\r\n\r\n"
    )

    async def trickle() -> None:
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)

    trickling = asyncio.create_task(trickle())
    others = await asyncio.gather(
        *(proxy.post("/v1/chat/completions", json=CHAT) for _ in range(20))
    )
    assert [r.status for r in others] == [200] * 20
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    trickling.cancel()
    writer.close()
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"helicone-id: slow-upload" in head
    row = await stored(proxy.app, "slow-upload")
    assert (row["status"], row["outcome"]) == (408, "rejected")
    assert len(upstream.received) == 20


@pytest.mark.parametrize(
    "path", ["/v1/request/some-id/feedback", "/v1/request/query", "/v1/helicone-dataset"]
)
async def test_slow_upload_to_the_management_api_is_cut_off(
    make_proxy: ProxyFactory, path: str
) -> None:
    proxy = await make_proxy(server={"body_timeout_s": 0.3})
    port = port_of(proxy)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 100\r\n\r\n{".encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408 ")


async def test_oversized_body_is_refused_before_it_is_sent(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(server={"max_body_bytes": 4096})
    port = port_of(proxy)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:%d\r\n" % port
        + b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert upstream.received == []
    await settle(proxy.app)


# Bad input

BAD_REQUESTS: list[tuple[str, bytes]] = [
    ("huge header value", b"X-Big: " + b"a" * 20_000 + b"\r\n"),
    (
        "10,000 property headers",
        b"".join(b"Helicone-Property-P%d: v\r\n" % i for i in range(10_000)),
    ),
    ("very long request id", b"Helicone-Request-Id: " + b"r" * 9000 + b"\r\n"),
    ("control characters", b"Helicone-Session-Path: /a\x01b\r\n"),
]
# Logging headers that are wrong but fit HTTP's limits: the call goes through with a warning.
BAD_LOGGING_HEADERS: list[tuple[str, bytes]] = [
    ("huge property value", b"Helicone-Property-Big: " + b"a" * 5000 + b"\r\n"),
    ("100 property headers", b"".join(b"Helicone-Property-P%d: v\r\n" % i for i in range(100))),
    ("non-UTF-8 property", b"Helicone-Property-Team: \xff\xfe\xfa\r\n"),
    ("non-UTF-8 request id", b"Helicone-Request-Id: id-\xc3\x28\r\n"),
    ("over-long request id", b"Helicone-Request-Id: " + b"r" * 129 + b"\r\n"),
    ("over-long user id", b"Helicone-User-Id: " + b"u" * 2000 + b"\r\n"),
    ("bad omit flag", b"Helicone-Omit-Request: \xff\r\n"),
]


async def raw_exchange(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line = answer.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), answer


def assert_no_stack_trace(body: bytes) -> None:
    assert b"Traceback" not in body and b'File "' not in body, body[:500]


@pytest.mark.parametrize(("name", "header"), BAD_REQUESTS, ids=[n for n, _ in BAD_REQUESTS])
async def test_bad_headers_are_refused_cleanly_and_serving_goes_on(
    proxy: Client, upstream: Upstream, name: str, header: bytes
) -> None:
    body = orjson.dumps(CHAT)
    port = port_of(proxy)
    status, answer = await raw_exchange(
        port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:%d\r\n" % port
        + b"Connection: close\r\nContent-Type: application/json\r\n"
        + header
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    assert 400 <= status < 500, answer[:300]
    assert_no_stack_trace(answer)
    assert upstream.received == []
    after = await proxy.post("/v1/chat/completions", json=CHAT)
    assert after.status == 200
    await stored(proxy.app, after.headers["helicone-id"])


def _raw_chat(port: int, header: bytes) -> bytes:
    body = orjson.dumps(CHAT)
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:%d\r\n" % port
        + b"Connection: close\r\nContent-Type: application/json\r\n"
        + header
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


@pytest.mark.parametrize(
    ("name", "header"), BAD_LOGGING_HEADERS, ids=[n for n, _ in BAD_LOGGING_HEADERS]
)
async def test_bad_logging_headers_are_forwarded_with_a_warning(
    proxy: Client, upstream: Upstream, name: str, header: bytes
) -> None:
    port = port_of(proxy)
    status, answer = await raw_exchange(port, _raw_chat(port, header))
    assert status == 200, answer[:300]
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert b"\r\nrelaylog-warning: " in head
    assert_no_stack_trace(answer)
    assert len(upstream.received) == 1
    await settle(proxy.app)
    rows = await store_of(proxy.app).fetch("SELECT warnings FROM requests")
    assert len(rows) == 1 and rows[0]["warnings"] is not None


async def test_non_utf8_in_other_headers_is_forwarded_and_logged(
    proxy: Client, upstream: Upstream
) -> None:
    body = orjson.dumps(CHAT)
    port = port_of(proxy)
    status, answer = await raw_exchange(
        port,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:%d\r\n" % port
        + b"Connection: close\r\nHelicone-Request-Id: latin-1\r\nUser-Agent: Caf\xe9\r\n"
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body,
    )
    assert status == 200, answer[:300]
    row = await stored(proxy.app, "latin-1")
    assert row["request_headers"]["user-agent"].startswith("Caf")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/request/" + "a" * 200 + "/feedback",
        "/v1/request/" + "a" * 9000 + "/feedback",
        "/v1/session/" + "s" * 2000 + "/feedback",
        "/v1/request/%FF%FE/score",
        "/v1/request/%00/feedback",
        "/v1/request/a%2Fb/feedback",
    ],
    ids=["id-200", "id-9000", "session-2000", "non-utf8", "nul", "slash"],
)
async def test_over_long_and_odd_ids_on_management_routes(
    proxy: Client, upstream: Upstream, path: str
) -> None:
    port = port_of(proxy)
    status, answer = await raw_exchange(
        port,
        f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n".encode()
        + b'Content-Type: application/json\r\nContent-Length: 15\r\n\r\n{"rating":true}',
    )
    assert 400 <= status < 500, answer[:300]
    assert_no_stack_trace(answer)
    assert upstream.received == []


# Store faults

LOCK_SCRIPT = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@pytest.mark.slow
async def test_store_locked_by_another_process_for_5s(proxy: Client, tmp_path: Path) -> None:
    await settle(proxy.app)
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOCK_SCRIPT,
        str(tmp_path / "relaylog.db"),
        "5",
        stdout=asyncio.subprocess.PIPE,
    )
    assert locker.stdout is not None
    assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
    statuses: list[int] = []
    for wave in range(15):
        answers = await asyncio.gather(
            *(
                proxy.post(
                    "/v1/chat/completions",
                    json=STREAM if n % 2 else CHAT,
                    headers={"Helicone-Request-Id": f"locked-{wave}-{n}"},
                )
                for n in range(10)
            )
        )
        for answer in answers:
            await answer.read()
            statuses.append(answer.status)
        await asyncio.sleep(0.2)
    assert (await proxy.get("/readyz")).status == 200
    assert locker.returncode is None, "the lock should outlast the traffic"
    assert statuses == [200] * 150
    assert await count_rows(proxy) == 0
    assert await locker.wait() == 0
    await settle(proxy.app, timeout=30)
    assert await count_rows(proxy) == 150


async def test_store_failing_past_the_queue_bound_drops_counts_and_warns(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    proxy = await make_proxy(recorder={"queue_size": 10, "retry_max_s": 0.05})
    store = store_of(proxy.app)

    async def failing(rows: Sequence[Row]) -> None:
        raise StoreError("disk I/O error")

    monkeypatch.setattr(store, "write_batch", failing)
    with caplog.at_level(logging.WARNING, logger="relaylog.recorder"):
        answers = [await proxy.post("/v1/chat/completions", json=CHAT) for _ in range(30)]
        await asyncio.sleep(0.3)
    assert [a.status for a in answers] == [200] * 30
    # Every write fails: not ready, so a load balancer sends calls to a replica that logs them.
    ready = await proxy.get("/readyz")
    assert ready.status == 503
    assert "log writes are failing" in (await ready.json())["error"]
    metrics = (await (await proxy.get("/metrics")).read()).decode()
    assert "relaylog_log_rows_dropped_total 20.0" in metrics
    assert "relaylog_log_queue_depth 10.0" in metrics
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("log queue full" in w and "dropped" in w for w in warnings), warnings
    assert any("disk I/O error" in w for w in warnings), warnings
    monkeypatch.undo()
    await settle(proxy.app)
    assert await count_rows(proxy) == 10
    assert (await proxy.post("/v1/chat/completions", json=CHAT)).status == 200
    await settle(proxy.app)
    ready = await proxy.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["data"] == {"status": "ready", "queue_depth": 0, "dropped": 20}


async def test_a_nearly_full_queue_reports_unready_and_recovers(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = await make_proxy(recorder={"queue_size": 10})
    store = store_of(proxy.app)
    gate = asyncio.Event()
    write = store.write_batch

    async def slow(rows: Sequence[Row]) -> None:
        await gate.wait()
        await write(rows)

    monkeypatch.setattr(store, "write_batch", slow)
    for _ in range(9):
        assert (await proxy.post("/v1/chat/completions", json=CHAT)).status == 200
    behind = await proxy.get("/readyz")
    assert behind.status == 503
    assert "9 of 10 rows queued" in (await behind.json())["error"]
    gate.set()
    await settle(proxy.app)
    assert (await proxy.get("/readyz")).status == 200
    assert await count_rows(proxy) == 9


async def test_a_deleted_sqlite_file_is_reported_and_opened_again(
    make_proxy: ProxyFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "gone.db"
    proxy = await make_proxy(store={"db": str(db)})
    assert (await proxy.post("/v1/chat/completions", json=CHAT)).status == 200
    await settle(proxy.app)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    gone = await proxy.get("/readyz")
    assert gone.status == 503
    assert "deleted or replaced" in (await gone.json())["error"]
    with caplog.at_level(logging.ERROR, logger="relaylog.store"):
        answer = await proxy.post("/v1/chat/completions", json=CHAT)
        await settle(proxy.app)
    assert any("deleted or replaced" in r.getMessage() for r in caplog.records)
    assert (await proxy.get("/readyz")).status == 200
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM requests")]
    assert ids == [answer.headers["helicone-id"]]


@pytest.mark.slow
async def test_a_store_gone_for_good_is_unready_and_the_shutdown_exit_names_the_lost_rows(
    tmp_path: Path,
) -> None:
    """The store's directory is removed while serving: calls are still answered, /readyz says
    unready, and the exit after SIGTERM is 1 with the number of exchanges that were not logged."""
    home = tmp_path / "store"
    home.mkdir()
    served = await start_serve(
        tmp_path,
        home / "gone.db",
        "--upstream",
        "sandbox",
        env={"RELAYLOG_RECORDER_DRAIN_TIMEOUT_S": "1", "RELAYLOG_RECORDER_RETRY_MAX_S": "0.1"},
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{served.url}/v1/chat/completions", json=CHAT) as response:
                assert response.status == 200
            async with asyncio.timeout(10):
                while (await scrape(session, served.url))["relaylog_log_rows_written_total"] < 1:
                    await asyncio.sleep(0.05)
            shutil.rmtree(home)
            for _ in range(3):
                async with session.post(f"{served.url}/v1/chat/completions", json=CHAT) as answer:
                    assert answer.status == 200
            async with session.get(f"{served.url}/readyz") as ready:
                assert ready.status == 503
    finally:
        code = await served.stop()
    err = served.stderr.read_text()
    assert code == 1, err
    assert "relaylog: 3 answered exchanges were not logged" in err
    assert "Traceback" not in err


# Process faults


@pytest.mark.slow
async def test_sigkill_then_restart_finds_a_consistent_store_and_serves(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    served = await start_serve(tmp_path, db, "--upstream", "sandbox")
    try:
        async with aiohttp.ClientSession() as session:
            for n in range(50):
                async with session.post(
                    f"{served.url}/v1/chat/completions",
                    json=CHAT,
                    headers={"Helicone-Request-Id": f"before-{n}"},
                ) as response:
                    assert response.status == 200
            async with asyncio.timeout(10):
                while (await scrape(session, served.url))["relaylog_log_rows_written_total"] < 50:
                    await asyncio.sleep(0.05)

            async def in_flight(n: int) -> None:
                async with session.post(
                    f"{served.url}/v1/chat/completions",
                    json=STREAM,
                    headers={"Sandbox-Fault": "chunk_delay_ms=500", "Helicone-Request-Id": f"k{n}"},
                ) as response:
                    await response.read()

            calls = [asyncio.create_task(in_flight(n)) for n in range(20)]
            await asyncio.sleep(0.5)
            served.process.send_signal(signal.SIGKILL)
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, aiohttp.ClientError) for r in results), results
        assert await served.process.wait() == -signal.SIGKILL
    finally:
        await served.kill()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        ids = {r[0] for r in conn.execute("SELECT id FROM requests")}
    conn.close()
    assert {f"before-{n}" for n in range(50)} <= ids
    restarted = await start_serve(tmp_path, db, "--upstream", "sandbox")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                f"{restarted.url}/v1/chat/completions",
                json=CHAT,
                headers={"Helicone-Request-Id": "after-restart"},
            ) as response:
                assert response.status == 200
            async with session.post(
                f"{restarted.url}/v1/request/before-7/feedback", json={"rating": True}
            ) as response:
                assert response.status == 200
    finally:
        assert await restarted.stop() == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT 1 FROM requests WHERE id = 'after-restart'").fetchone()
    conn.close()
