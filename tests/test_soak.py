"""A bounded soak: full rate with 1% injected upstream faults; rows == responses, RSS flat.

Runs RELAYLOG_SOAK_S seconds (default 12; the issue's full run is RELAYLOG_SOAK_S=60).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp

from tests.serving import rss_bytes, scrape, start_serve

SOAK_S = float(os.environ.get("RELAYLOG_SOAK_S", "12"))
CONNECTIONS = 16
FAULT_EVERY = 100
# (Sandbox-Fault header, what the client must see)
FAULTS = [("status=500", "500"), ("status=429, retry_after=1", "429"), ("cut_after=2", "cut")]
# RSS may grow this much after warm-up (allocator and SQLite page cache settling), no more.
RSS_SLACK_BYTES = 24 * 1024 * 1024


async def test_soak_at_full_rate_with_injected_faults(tmp_path: Path) -> None:
    db = tmp_path / "soak.db"
    served = await start_serve(tmp_path, db, "--upstream", "sandbox")
    seen: Counter[str] = Counter()
    unexpected: list[str] = []
    numbers = itertools.count()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SOAK_S
    rss: list[int] = []

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        streamed = n % 2 == 0
        headers = {"Helicone-Request-Id": f"soak-{n}", "Helicone-Property-Worker": str(n % 7)}
        expected = "200"
        if n % FAULT_EVERY == FAULT_EVERY - 1:
            fault, expected = FAULTS[(n // FAULT_EVERY) % len(FAULTS)]
            headers["Sandbox-Fault"] = fault
            streamed = True  # a cut needs a stream to cut
        body = {
            "model": "gpt-4o-mini",
            "stream": streamed,
            "messages": [{"role": "user", "content": f"soak message number {n}"}],
        }
        try:
            async with session.post(
                f"{served.url}/v1/chat/completions", json=body, headers=headers
            ) as response:
                got = str(response.status)
                try:
                    await response.read()
                except aiohttp.ClientPayloadError:
                    got = "cut"
        except aiohttp.ClientError as exc:
            got = f"error {exc!r}"
        seen[got] += 1
        if got != expected:
            unexpected.append(f"soak-{n}: expected {expected}, got {got}")

    async def worker(session: aiohttp.ClientSession) -> None:
        while loop.time() < deadline:
            await one(session, next(numbers))

    async def sample_rss() -> None:
        while loop.time() < deadline:
            rss.append(rss_bytes(served.process.pid))
            await asyncio.sleep(SOAK_S / 20)

    try:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(sample_rss(), *(worker(session) for _ in range(CONNECTIONS)))
            metrics = await scrape(session, served.url)
        rss.append(rss_bytes(served.process.pid))
    finally:
        assert await served.stop() == 0
    responses = sum(seen.values())
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM requests GROUP BY outcome"))
    conn.close()
    warm, end = rss[len(rss) // 5], rss[-1]
    print(
        f"\nsoak {SOAK_S:.0f}s: {responses} responses ({responses / SOAK_S:.0f}/s), {rows} rows, "
        f"answers {dict(seen)}, outcomes {outcomes}, RSS after warm-up {warm / 2**20:.1f} MiB, "
        f"at end {end / 2**20:.1f} MiB, peak {max(rss) / 2**20:.1f} MiB"
    )
    assert unexpected == []
    assert seen["cut"] > 0 and seen["500"] > 0 and seen["429"] > 0
    assert rows == responses
    assert outcomes["stream_incomplete"] == seen["cut"]
    assert outcomes["upstream_error"] == seen["500"] + seen["429"]
    assert metrics["relaylog_log_rows_dropped_total"] == 0
    assert end - warm < RSS_SLACK_BYTES, f"RSS grew {(end - warm) / 2**20:.1f} MiB"
    logs = served.logs()
    assert b"Traceback" not in logs and b" ERROR " not in logs, logs[-2000:]
