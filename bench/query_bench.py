"""Time the query layer on a large store (see bench/gen_store.py) and print a Markdown table.

    python bench/gen_store.py --rows 1000000 --db /tmp/relaylog-bench.db
    python bench/query_bench.py --db /tmp/relaylog-bench.db

Each query runs once to warm the page cache, then `--runs` times; the table shows the median
and the slowest run against the targets in DESIGN.md section 10. Queries go through the same
functions the HTTP handlers call (compile the filter, run the SQL, shape the rows), without
the HTTP hop. The export writes `--export-rows` rows to /dev/null and samples the process's
resident memory at every batch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import Store
from storage.query.export import ExportCounts, export_chunks
from storage.query.filters import compile_filter
from storage.query.pages import PageQuery, query_page
from storage.query.stats import request_stats
from storage.sqlite import SQLiteStore

RATED_UP = {"feedback": {"rating": {"equals": True}}}
APP_SUPPORT = {"properties": {"app": {"equals": "support"}}}
PAGE_SIZE = 4096


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def timed(runs: int, work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(median ms, slowest ms) over `runs` runs after one warm-up run."""
    await work()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples)


async def days_before_newest(store: Store, days: int) -> str:
    rows = await store.fetch("SELECT MAX(created_at) AS last FROM requests")
    newest = datetime.fromisoformat(str(rows[0]["last"]))
    return (newest - timedelta(days=days)).isoformat()


async def export_run(store: Store, fmt: str, rows: int) -> dict[str, float]:
    condition = compile_filter("all")
    counts = ExportCounts()
    start_rss = peak = rss_mb()
    at_tenth = 0.0
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        chunks = export_chunks(store, condition, fmt, counts, limit=rows)
        async with aclosing(chunks):
            async for chunk in chunks:
                sink.write(chunk)
                peak = max(peak, rss_mb())
                if not at_tenth and counts.rows >= rows // 10:
                    at_tenth = rss_mb()
    elapsed = time.perf_counter() - started
    return {
        "rows": counts.rows,
        "rate": counts.rows / elapsed,
        "start": start_rss,
        "tenth": at_tenth,
        "peak": peak,
    }


async def bench(db: str, runs: int, export_rows: int) -> None:
    store = SQLiteStore(db)
    await store.open()
    total = (await store.fetch("SELECT COUNT(*) AS n FROM requests"))[0]["n"]
    month_ago = {"request": {"created_at": {"gte": await days_before_newest(store, 30)}}}
    page = PageQuery(RATED_UP, limit=50)
    page_with_property = PageQuery(
        {"left": RATED_UP, "operator": "and", "right": APP_SUPPORT}, limit=50
    )
    first = await query_page(store, page)
    deep = PageQuery(RATED_UP, limit=50, cursor=first.next_cursor)
    for _ in range(200):
        deep.cursor = (await query_page(store, deep)).next_cursor
    everything = compile_filter("all")
    this_month = compile_filter(month_ago)
    results = [
        (
            "feedback = up, newest first, 50 rows",
            50,
            await timed(runs, lambda: query_page(store, page)),
        ),
        (
            "feedback = up AND property app = support, 50 rows",
            100,
            await timed(runs, lambda: query_page(store, page_with_property)),
        ),
        (
            "same as the first, page 202 by cursor",
            50,
            await timed(runs, lambda: query_page(store, deep)),
        ),
        (
            "stats by day and model, whole store",
            300,
            await timed(runs, lambda: request_stats(store, everything, ["day", "model"])),
        ),
        (
            "stats by day and model, last 30 days",
            300,
            await timed(runs, lambda: request_stats(store, this_month, ["day", "model"])),
        ),
        (
            "stats totals, whole store",
            300,
            await timed(runs, lambda: request_stats(store, everything)),
        ),
    ]
    print(f"store: {db} ({total:,} rows), {runs} runs after a warm-up; times in ms\n")
    print("| query | target | median | slowest |")
    print("|---|---:|---:|---:|")
    for name, target, (median, slowest) in results:
        print(f"| {name} | <= {target} | {median:.1f} | {slowest:.1f} |")
    print("\n| export | rows | rows/s (target >= 20,000) | RSS MB at start / 10% / peak |")
    print("|---|---:|---:|---|")
    for fmt in ("jsonl", "openai-chat", "csv"):
        run = await export_run(store, fmt, export_rows)
        print(
            f"| {fmt} | {run['rows']:,.0f} | {run['rate']:,.0f} | "
            f"{run['start']:.0f} / {run['tenth']:.0f} / {run['peak']:.0f} |"
        )
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/relaylog-bench.db", help="store from gen_store.py")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--export-rows", type=int, default=100_000)
    args = parser.parse_args()
    if not Path(args.db).exists():
        parser.error(f"{args.db} does not exist; create it with bench/gen_store.py")
    asyncio.run(bench(args.db, args.runs, args.export_rows))


if __name__ == "__main__":
    main()
