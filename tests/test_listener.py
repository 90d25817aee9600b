"""The listener's bounds: connections past the limit answered 503 and logged, the open-file limit
raised and checked."""

from __future__ import annotations

import asyncio
import logging
import os
import resource
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from proxy.listener import (
    RESERVED_FDS,
    BoundedSite,
    client_connection_limit,
    raise_open_file_limit,
)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.fixture
async def bounded() -> AsyncIterator[tuple[web.AppRunner, BoundedSite]]:
    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = BoundedSite(runner, "127.0.0.1", 0, limit=2)
    await site.start()
    yield runner, site
    await runner.cleanup()


async def get(port: int) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """One keep-alive GET /; the answer's status line, and the connection left open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await reader.readline()
    await reader.readuntil(b"hello")
    return status, reader, writer


async def test_connections_beyond_the_limit_are_answered_503_and_logged(
    bounded: tuple[web.AppRunner, BoundedSite], caplog: pytest.LogCaptureFixture
) -> None:
    runner, site = bounded
    first, _, first_writer = await get(site.port)
    second, _, second_writer = await get(site.port)
    try:
        assert first == second == b"HTTP/1.1 200 OK\r\n"
        with caplog.at_level(logging.WARNING, logger="relaylog.listener"):
            reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
            refused = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            await writer.wait_closed()
        assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        assert b"connection limit" in refused and b"Retry-After: 1" in refused
        assert site.refused == 1
        assert [r.getMessage() for r in caplog.records if r.name == "relaylog.listener"] == [
            "refused 1 client connections at the limit of 2 open ones "
            "(server.max_client_connections or the open-file limit)"
        ]
        first_writer.close()
        await first_writer.wait_closed()
        assert runner.server is not None
        async with asyncio.timeout(10):
            while len(runner.server.connections) > 1:
                await asyncio.sleep(0.01)
        again, _, again_writer = await get(site.port)
        again_writer.close()
        await again_writer.wait_closed()
        assert again == b"HTTP/1.1 200 OK\r\n"
    finally:
        for open_writer in (first_writer, second_writer):
            open_writer.close()
            await open_writer.wait_closed()


@pytest.fixture
def restore_nofile() -> Iterator[None]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


@pytest.mark.usefixtures("restore_nofile")
def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    lowered = min(hard, in_use + 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    assert raise_open_file_limit() == (hard, hard)
    assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)


@pytest.mark.parametrize(
    ("open_files", "configured", "limit", "warning"),
    [
        (1024, 0, (1024 - RESERVED_FDS) // 2, "the open-file limit is 1024"),
        (1_048_576, 0, (1_048_576 - RESERVED_FDS) // 2, None),
        (1024, 5000, 5000, "server.max_client_connections is 5000"),
        (100_000, 100, 100, None),
    ],
)
def test_the_client_connection_limit_leaves_room_for_upstream_sockets(
    open_files: int,
    configured: int,
    limit: int,
    warning: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="relaylog.listener"):
        assert client_connection_limit(open_files, configured) == limit
    messages = [r.getMessage() for r in caplog.records]
    if warning is None:
        assert messages == []
    else:
        [message] = messages
        assert message.startswith(warning) and "ulimit -n" in message
