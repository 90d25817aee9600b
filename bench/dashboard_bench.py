"""Time every dashboard view on a large store through its HTTP route and print a Markdown table.

    python bench/gen_store.py --rows 1000000 --db /tmp/relaylog-bench.db
    python bench/dashboard_bench.py --db /tmp/relaylog-bench.db

The store is copied first (into `--work-dir`, removed at the end) and never written: the
copy gets one dataset (the rated-down rows) so the datasets page has one to count. relaylog
then runs in this process on the copy (create_app under aiohttp's test server on 127.0.0.1,
the dashboard's time limit raised to `--timeout` so a slow view shows its real time) and each
view is fetched over HTTP: once to warm the page cache, then `--runs` times. The table gives
the median and slowest wall time, the median CPU time of the process (all threads: the event
loop and SQLite's; the client's own share is small), and the verdict against the targets of
issue 12: each view's data in <= 300 ms median. CPU time is steadier than wall time on a
shared machine. Exits 1 when a view misses its target or does not answer 200.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.app import create_app
from proxy.config import Settings
from proxy.state import STORE

TARGET_MS = 300.0
# The requests list's filters: none, feedback, a score, and both (URL shorthands).
LIST_FILTERS = (
    ("", ""),
    ("feedback up", "feedback=up"),
    ("accuracy > 90", "score=accuracy>90"),
    ("feedback down and accuracy > 90", "feedback=down&score=accuracy>90"),
)
RANGES = (("24 h", "24h"), ("7 d", "7d"), ("30 d", "30d"), ("all time", ""))
# The analytics page's other reads: ratings split by user or by gen_store's prompt version, and
# the comparison of two prompt versions.
ANALYTICS_CHOICES = (
    ("split by user", "split=user"),
    ("split by prompt version", "split=property:prompt_version"),
    ("comparing prompt v1 and v2", "cmp=groups&cmp_by=property:prompt_version&cmp_a=v1&cmp_b=v2"),
)
DATASET = "bench rated down"
CURSOR = re.compile(r'data-cursor="([^"]+)"')
STATS_BODY = {"filter": "all", "group_by": ["day", "model"]}


@dataclass(frozen=True, slots=True)
class View:
    """One timed fetch: the table's name for it, and the HTTP call."""

    name: str
    path: str
    body: Any = None
    # The route as the table shows it, when not the path (ids stand for themselves).
    shown: str | None = None

    @property
    def method(self) -> str:
        return "GET" if self.body is None else "POST"


@dataclass(slots=True)
class Timing:
    """A view's runs: wall and CPU milliseconds, and the statuses it answered."""

    view: View
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    statuses: set[int] = field(default_factory=set)

    @property
    def median(self) -> float:
        return statistics.median(self.wall_ms)

    @property
    def met(self) -> bool:
        return self.statuses == {200} and self.median <= TARGET_MS


def copy_store(db: Path, work_dir: Path) -> Path:
    """The store and its write-ahead log copied into `work_dir`; the original is only read."""
    copy = work_dir / "dashboard-bench.db"
    shutil.copyfile(db, copy)
    for suffix in ("-wal",):
        log = db.with_name(db.name + suffix)
        if log.exists():
            shutil.copyfile(log, copy.with_name(copy.name + suffix))
    return copy


def settings_for(db: Path, timeout_s: float) -> Settings:
    return Settings.model_validate(
        {
            "store": {"db": str(db)},
            # Never called: the bench only reads. Loopback keeps any stray call local.
            "upstream": {"url": "http://127.0.0.1:9/v1"},
            "recorder": {"writer": "task"},
            "dashboard": {"query_timeout_s": timeout_s},
        }
    )


def in_range(path: str, since: str, joiner: str = "?") -> str:
    return f"{path}{joiner}{urlencode({'since': since})}" if since else path


async def list_views(session: aiohttp.ClientSession) -> list[View]:
    """The requests list for each filter: its first page, the next page by the cursor the
    first one carries, and the capped count."""
    views = []
    for label, query in LIST_FILTERS:
        suffix = f" ({label})" if label else ""
        first = f"/requests?{query}" if query else "/requests"
        async with session.get(first) as response:
            found = CURSOR.search(await response.text())
        views.append(View(f"requests page: first page{suffix}", first))
        if found is not None:
            params = f"{query}&" if query else ""
            params += urlencode({"cursor": found.group(1)})
            views.append(View(f"requests page: next page{suffix}", f"/requests/rows?{params}"))
        count = f"/requests/count?{query}" if query else "/requests/count"
        views.append(View(f"requests page: capped count{suffix}", count))
    return views


async def prepare(server: TestServer, session: aiohttp.ClientSession) -> list[View]:
    """Every view to time, with the ids they need read from the store; makes the dataset."""
    store = server.app[STORE]
    newest = await store.fetch("SELECT id FROM requests ORDER BY created_at DESC, id DESC LIMIT 1")
    in_session = await store.fetch(
        "SELECT session_id FROM rollup_sessions WHERE requests > 0 "
        "ORDER BY last_at DESC, session_id DESC LIMIT 1"
    )
    body = {"datasetName": DATASET, "filter": {"feedback": {"rating": {"equals": False}}}}
    async with session.post("/v1/helicone-dataset", json=body) as response:
        if response.status >= 300:
            raise SystemExit(f"could not make the dataset: {await response.text()}")
    views = await list_views(session)
    if newest:
        drawer = f"/requests/{quote(newest[0]['id'], safe='')}/drawer"
        views.append(View("request drawer", drawer, shown="/requests/{id}/drawer"))
    views += [View(f"analytics, {label}", in_range("/analytics", since)) for label, since in RANGES]
    for name, params in ANALYTICS_CHOICES:
        views += [
            View(f"analytics {name}, {label}", in_range(f"/analytics?{params}", since, "&"))
            for label, since in RANGES
        ]
    views += [
        View(f"operations, {label}", in_range("/operations", since)) for label, since in RANGES
    ]
    views += [
        View(f"operations: property values, {label}", in_range("/operations/values", since))
        for label, since in RANGES
    ]
    views.append(View("sessions list", "/sessions"))
    if in_session:
        session_id = in_session[0]["session_id"]
        path = f"/sessions/{quote(session_id, safe='')}"
        views.append(View("one session", path, shown="/sessions/{id}"))
    views += [View("users", "/users"), View("datasets", "/datasets")]
    views.append(View("POST /v1/request/stats by day and model", "/v1/request/stats", STATS_BODY))
    return views


async def fetch(session: aiohttp.ClientSession, view: View) -> int:
    async with session.request(view.method, view.path, json=view.body) as response:
        await response.read()
        return response.status


async def time_view(session: aiohttp.ClientSession, view: View, runs: int) -> Timing:
    """One warm-up fetch, then `runs` timed ones."""
    timing = Timing(view)
    timing.statuses.add(await fetch(session, view))
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        timing.statuses.add(await fetch(session, view))
        timing.cpu_ms.append((time.process_time() - cpu) * 1000)
        timing.wall_ms.append((time.perf_counter() - wall) * 1000)
    return timing


async def measure(
    db: Path, work_dir: Path, runs: int, timeout_s: float, only: Sequence[str] = ()
) -> tuple[int, list[Timing]]:
    """The store's row count and each view's timing (those whose name contains one of
    `only`, when given), on a copy of `db` made in `work_dir`."""
    copy = copy_store(db, work_dir)
    server = TestServer(create_app(settings_for(copy, timeout_s)), host="127.0.0.1")
    await server.start_server()
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s + 60)
        async with aiohttp.ClientSession(server.make_url(""), timeout=timeout) as session:
            rows = (await server.app[STORE].fetch("SELECT COUNT(*) AS n FROM requests"))[0]["n"]
            views = await prepare(server, session)
            if only:
                views = [v for v in views if any(word in v.name for word in only)]
            timings = []
            for view in views:
                timing = await time_view(session, view, runs)
                timings.append(timing)
                print(f"  {view.name}: {timing.median:,.0f} ms", file=sys.stderr, flush=True)
    finally:
        await server.close()
    return int(rows), timings


def verdict(timing: Timing) -> str:
    if timing.statuses != {200}:
        return f"answered {', '.join(str(s) for s in sorted(timing.statuses))}"
    return "met" if timing.met else "missed"


def table(timings: Sequence[Timing]) -> str:
    """The Markdown table: view, route, median and slowest ms, median CPU ms, target, verdict."""
    lines = [
        "| view | route | median ms | slowest ms | CPU ms | target | |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for t in timings:
        path, _, query = t.view.path.partition("?")
        route = f"{t.view.method} {t.view.shown or path}"
        query = "&".join(p for p in query.split("&") if p and not p.startswith("cursor="))
        if query:
            route += f"?{query}"
        lines.append(
            f"| {t.view.name} | `{route}` | {t.median:,.0f} | {max(t.wall_ms):,.0f} | "
            f"{statistics.median(t.cpu_ms):,.0f} | <= {TARGET_MS:.0f} | {verdict(t)} |"
        )
    return "\n".join(lines)


def load() -> str:
    return "/".join(f"{n:.1f}" for n in os.getloadavg())


async def bench(db: Path, runs: int, timeout_s: float, work: Path | None, only: list[str]) -> int:
    """Run the bench and print the table; 1 when a view missed its target."""
    before = load()
    with tempfile.TemporaryDirectory(prefix="relaylog-dashboard-bench-", dir=work) as tmp:
        rows, timings = await measure(db, Path(tmp), runs, timeout_s, only)
    print(
        f"store: {db} ({rows:,} rows), copied; {runs} runs after a warm-up; "
        f"load average {before} before, {load()} after ({os.cpu_count()} cores)\n"
    )
    print(table(timings))
    missed = [t.view.name for t in timings if not t.met]
    print(f"\n{len(timings) - len(missed)} of {len(timings)} views met the target.")
    return 1 if missed else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/relaylog-bench.db", help="store from gen_store.py")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per view")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="the dashboard's time limit, seconds"
    )
    parser.add_argument("--work-dir", type=Path, help="where the copy goes (default: /tmp)")
    parser.add_argument(
        "--only", action="append", default=[], help="only views whose name contains this"
    )
    args = parser.parse_args()
    db = Path(args.db)
    if not db.exists():
        parser.error(f"{db} does not exist; create it with bench/gen_store.py")
    with db.open("rb") as header:
        if header.read(16) != b"SQLite format 3\x00":
            parser.error(f"{db} is not a SQLite store")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    sys.exit(asyncio.run(bench(db, args.runs, args.timeout, args.work_dir, args.only)))


if __name__ == "__main__":
    main()
