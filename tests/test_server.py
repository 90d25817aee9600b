"""proxy/server.py as an operator runs it: the access log, client connection bounds."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.server import AccessLog
from tests.helpers import start_serve


async def test_the_access_log_redacts_credential_query_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/models", ok)
    server = TestServer(app)
    await server.start_server(
        access_log=logging.getLogger("aiohttp.access"), access_log_class=AccessLog
    )
    async with TestClient(server) as client:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            response = await client.get(
                "/v1/models?api-version=1&api-key=sk-q&key=AIza&sig=s",
                headers={"User-Agent": "sdk/1", "Referer": "https://x/?token=t"},
            )
            assert response.status == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert '"GET /v1/models?api-version=1&api-key=[redacted]&key=[redacted]&sig=[redacted] ' in line
    assert " 200 " in line and line.endswith('"sdk/1"')
    assert "sk-q" not in line and "AIza" not in line and "token=t" not in line


async def _keep_alive_call(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    status = await reader.readline()
    await reader.readuntil(b'"error":null}')
    return status, reader, writer


@pytest.mark.slow
async def test_idle_and_slow_header_connections_are_closed_and_a_flood_is_refused(
    tmp_path: Path,
) -> None:
    env = {"RELAYLOG_SERVER_IDLE_TIMEOUT_S": "1", "RELAYLOG_SERVER_MAX_CLIENT_CONNECTIONS": "2"}
    served = await start_serve(tmp_path, tmp_path / "idle.db", env=env)
    port = int(served.url.rsplit(":", 1)[1])
    try:
        first, first_reader, first_writer = await _keep_alive_call(port)
        second, second_reader, second_writer = await _keep_alive_call(port)
        assert first == second == b"HTTP/1.1 200 OK\r\n"
        # Two connections open: a third is answered 503 and closed.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        # Idle keep-alive connections are closed by relaylog after server.idle_timeout_s.
        async with asyncio.timeout(15):
            assert await first_reader.read() == b"" and await second_reader.read() == b""
        first_writer.close()
        second_writer.close()
        # A client that never finishes its request head is closed too, with no answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        async with asyncio.timeout(15):
            assert await _answer_or_nothing(reader) == b""
        writer.close()
        again, _, again_writer = await _keep_alive_call(port)
        assert again == b"HTTP/1.1 200 OK\r\n"
        again_writer.close()
    finally:
        assert await served.stop() == 0
    assert b"refused 1 client connections at the limit of 2" in served.logs()


async def _answer_or_nothing(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing; a close that resets the connection (the kernel
    does so when the head the client sent is still unread) sent nothing either."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


@pytest.mark.slow
async def test_a_fatal_signal_such_as_sigbus_is_reported_on_stderr(tmp_path: Path) -> None:
    # SQLite's WAL index is memory-mapped: an unwritable or vanished store can raise SIGBUS.
    served = await start_serve(tmp_path, tmp_path / "relaylog.db", "--upstream", "sandbox")
    try:
        served.process.send_signal(signal.SIGBUS)
        assert await asyncio.wait_for(served.process.wait(), 30) == -signal.SIGBUS
    finally:
        await served.kill()
    stderr = served.stderr.read_text()
    assert "Fatal Python error: Bus error" in stderr
    assert "Current thread" in stderr or "Thread 0x" in stderr
