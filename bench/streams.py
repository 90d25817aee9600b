"""Streamed-call measurements driven from Python: time to first byte, and many streams held open.

wrk cannot time the first byte of a response or keep a thousand slow streams open while memory is
sampled, so bench/run.py does both with this small aiohttp client over loopback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}


async def first_byte_times(url: str, body: bytes, count: int) -> list[float]:
    """Send `count` streamed calls one after another on one keep-alive connection.

    Returns each call's time to the first body byte in milliseconds; every stream is then read
    to its end so the server side finishes the exchange normally.
    """
    times: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(count):
            start = time.perf_counter()
            async with session.post(url, data=body, headers=HEADERS) as response:
                first = await response.content.readany()
                times.append((time.perf_counter() - start) * 1000)
                if response.status != 200 or not first:
                    raise RuntimeError(f"{url}: status {response.status}, first chunk {first!r}")
                await response.read()
    return times


@dataclass
class HeldStreams:
    """How a round of concurrent slow streams went."""

    requested: int
    held: int = 0
    completed: int = 0
    errors: list[str] = field(default_factory=list)
    open_s: float = 0.0


async def hold_streams(
    url: str,
    body: bytes,
    count: int,
    while_held: Callable[[], Awaitable[None]],
    open_timeout_s: float = 30.0,
) -> HeldStreams:
    """Open `count` slow streams at once; once all have sent a first byte, await `while_held()`.

    A stream counts as held when its first byte arrived and it had not ended yet when the last
    one opened, and as completed when it ended with `data: [DONE]`.
    """
    result = HeldStreams(requested=count)
    first_bytes = 0
    all_open = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal first_bytes
        try:
            async with session.post(url, data=body, headers=HEADERS) as response:
                data = await response.content.readany()
                if response.status != 200 or not data:
                    raise RuntimeError(f"status {response.status}")
                first_bytes += 1
                if first_bytes == count:
                    all_open.set()
                ended_early = response.content.at_eof()
                data += await response.read()
                if not all_open.is_set() or ended_early:
                    result.errors.append("stream ended before all streams were open")
                elif b"data: [DONE]" in data:
                    result.completed += 1
                else:
                    result.errors.append("stream ended without [DONE]")
        except Exception as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.perf_counter()
        tasks = [asyncio.create_task(one(session)) for _ in range(count)]
        try:
            await asyncio.wait_for(all_open.wait(), open_timeout_s)
        except TimeoutError:
            result.errors.append(f"only {first_bytes} of {count} streams open after timeout")
        result.open_s = time.perf_counter() - start
        result.held = first_bytes
        await while_held()
        await asyncio.gather(*tasks)
    return result
