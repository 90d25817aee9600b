"""A bounded soak: rounds of the same work at full rate with 1% injected upstream faults; rows ==
responses, and memory stops growing once warm.

A leak grows memory with every round of the same work; allocator and cache settling grows it in the
first rounds, and a busy machine (a deeper log queue) adds an occasional step, not one per round.
Settling also runs on for a round or two after the first, longer on a loaded machine, while a leak
adds the same amount every round to the last. So the gate compares the median growth per round over
the later half of the rounds with the growth of the warm-up round itself, both measured here, once
each round's rows are written.
RELAYLOG_SOAK_ROUNDS sets the number of rounds (default 12, of ROUND_REQUESTS requests each).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
import statistics
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import heap_bytes, scrape, start_serve

pytestmark = pytest.mark.slow
ROUNDS = max(6, int(os.environ.get("RELAYLOG_SOAK_ROUNDS", "12")))
ROUND_REQUESTS = 1000
CONNECTIONS = 16
FAULT_EVERY = 100
# (Sandbox-Fault header, what the client must see)
FAULTS = [("status=500", "500"), ("status=429, retry_after=1", "429"), ("cut_after=2", "cut")]
# After warm-up, a typical round may add at most this share of what the warm-up round added.
GROWTH_SHARE = 1 / 8
SETTLE_POLLS = 600  # x 0.1 s for a round's rows to be written


async def test_soak_at_full_rate_with_injected_faults(tmp_path: Path) -> None:
    db = tmp_path / "soak.db"
    served = await start_serve(tmp_path, db, "--upstream", "sandbox")
    seen: Counter[str] = Counter()
    unexpected: list[str] = []
    heap: list[int] = []

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

    async def worker(
        session: aiohttp.ClientSession, numbers: itertools.count[int], end: int
    ) -> None:
        while (n := next(numbers)) < end:
            await one(session, n)

    async def written(session: aiohttp.ClientSession, responses: int) -> dict[str, float]:
        """Metrics once every response so far is a committed row and nothing is in flight."""
        for _ in range(SETTLE_POLLS):
            metrics = await scrape(session, served.url)
            if (
                metrics["relaylog_log_rows_written_total"] == responses
                and metrics["relaylog_log_queue_depth"] == 0
                and metrics["relaylog_requests_in_flight"] == 0
            ):
                return metrics
            await asyncio.sleep(0.1)
        raise AssertionError(f"{responses} responses, rows not all written: {metrics}")

    try:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(connector=connector) as session:
            heap.append(heap_bytes(served.process.pid))
            for round_ in range(ROUNDS):
                end = (round_ + 1) * ROUND_REQUESTS
                numbers = itertools.count(round_ * ROUND_REQUESTS)
                await asyncio.gather(*(worker(session, numbers, end) for _ in range(CONNECTIONS)))
                metrics = await written(session, end)
                heap.append(heap_bytes(served.process.pid))
    finally:
        assert await served.stop() == 0
    responses = sum(seen.values())
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM requests GROUP BY outcome"))
    conn.close()
    warm_up, *steps = [after - before for before, after in itertools.pairwise(heap)]
    typical = statistics.median(steps[len(steps) // 2 :])
    print(
        f"\nsoak: {ROUNDS} rounds, {responses} responses, {rows} rows, answers {dict(seen)}, "
        f"outcomes {outcomes}; heap {heap[0] / 2**20:.1f} MiB at start, warm-up round "
        f"+{warm_up / 2**10:.0f} KiB, then per round (KiB) {[s // 2**10 for s in steps]}"
    )
    assert unexpected == []
    assert seen["cut"] > 0 and seen["500"] > 0 and seen["429"] > 0
    assert rows == responses
    assert outcomes["stream_incomplete"] == seen["cut"]
    assert outcomes["upstream_error"] == seen["500"] + seen["429"]
    assert metrics["relaylog_log_rows_dropped_total"] == 0
    assert typical <= warm_up * GROWTH_SHARE, (
        f"memory grows with work: a later round adds {typical / 2**10:.0f} KiB (median), "
        f"the warm-up round added {warm_up / 2**10:.0f} KiB"
    )
    logs = served.logs()
    assert b"Traceback" not in logs and b" ERROR " not in logs, logs[-2000:]
