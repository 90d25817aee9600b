"""Logging under a large prune: calls through `relaylog serve` while `relaylog prune` deletes.

    python bench/gen_store.py --rows 1000000 --db /tmp/relaylog-1m.db
    python bench/prune_bench.py --db /tmp/relaylog-1m.db [--pg postgresql://127.0.0.1:5432/test]

For each store (the SQLite file, a copy of it, is pruned in place; for PostgreSQL the rows are
copied into a fresh schema first), `relaylog serve --upstream sandbox` runs as a subprocess and
`--connections` clients send chat calls for `--warmup` seconds, then for as long as a
`relaylog prune --older-than` (`--older-than`, default every pre-existing row) runs in another
process. The PostgreSQL schema is dropped at the end. It prints calls/s,
latency p50/p99/max and the deepest log queue seen, before and during the prune, and checks that
every call answered was logged.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import open_store
from storage.models import ROW_COLUMNS
from tests.helpers import clean_env, scrape, start_serve

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "prune bench"}]}
COPY_TABLES = ("requests", "request_properties", "feedback", "scores")


class Load:
    """Clients sending chat calls; latencies recorded per phase."""

    def __init__(self, url: str, connections: int) -> None:
        self.url = url
        self.connections = connections
        self.phase = "before"
        self.latencies: dict[str, list[float]] = {"before": [], "during": []}
        self.elapsed: dict[str, float] = {}
        self.depth: dict[str, float] = {"before": 0, "during": 0}
        self.stop = False

    async def client(self, session: aiohttp.ClientSession) -> None:
        while not self.stop:
            started = time.perf_counter()
            async with session.post(f"{self.url}/v1/chat/completions", json=CHAT) as response:
                await response.read()
                assert response.status == 200, response.status
            self.latencies[self.phase].append((time.perf_counter() - started) * 1000)

    async def watch(self, session: aiohttp.ClientSession) -> None:
        while not self.stop:
            metrics = await scrape(session, self.url)
            depth = metrics.get("relaylog_log_queue_depth", 0)
            self.depth[self.phase] = max(self.depth[self.phase], depth)
            await asyncio.sleep(0.1)


def _summary(latencies: list[float], seconds: float, depth: float) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99) - 1] if ordered else 0.0
    return (
        f"{len(ordered) / seconds:8.0f} calls/s  p50 {statistics.median(ordered):7.1f} ms  "
        f"p99 {p99:7.1f} ms  max {ordered[-1]:7.1f} ms  deepest queue {depth:.0f}"
    )


async def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    """The SQLite store's rows in a PostgreSQL store (schema created by relaylog's migrations)."""
    import asyncpg

    store = open_store(url)
    await store.open()
    await store.close()
    dsn, schema = url.split("?schema=")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    source = sqlite3.connect(sqlite_path)
    for table in COPY_TABLES:
        columns = (
            list(ROW_COLUMNS)
            if table == "requests"
            else [c[1] for c in source.execute(f"PRAGMA table_info({table})")]
        )
        cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
        while rows := cursor.fetchmany(20_000):
            await conn.copy_records_to_table(table, records=rows, columns=columns)
        print(f"  copied {table}", file=sys.stderr)
    source.close()
    await conn.execute("ANALYZE")
    await conn.close()


async def run(db: str, workdir: Path, args: argparse.Namespace) -> None:
    # start_serve takes a path; a later --db (a PostgreSQL URL) overrides it.
    served = await start_serve(workdir, workdir / "unused.db", "--upstream", "sandbox", "--db", db)
    load = Load(served.url, args.connections)
    connector = aiohttp.TCPConnector(limit=args.connections + 1)
    async with aiohttp.ClientSession(connector=connector) as session:
        before_rows = await _rows(db)
        tasks = [asyncio.create_task(load.client(session)) for _ in range(args.connections)]
        watcher = asyncio.create_task(load.watch(session))
        await asyncio.sleep(args.warmup)
        load.elapsed["before"] = args.warmup
        load.phase = "during"
        started = time.perf_counter()
        prune = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            "prune",
            "--db",
            db,
            "--older-than",
            args.older_than,
            "--json",
            stdout=asyncio.subprocess.PIPE,
            cwd=workdir,
            env=clean_env(),
        )
        out, _ = await prune.communicate()
        load.elapsed["during"] = time.perf_counter() - started
        load.stop = True
        await asyncio.gather(*tasks, watcher)
        while (metrics := await scrape(session, served.url))["relaylog_log_queue_depth"]:
            await asyncio.sleep(0.1)
    await served.stop()
    answered = sum(len(v) for v in load.latencies.values())
    written = int(metrics["relaylog_log_rows_written_total"])
    dropped = int(metrics["relaylog_log_rows_dropped_total"])
    print(f"store {db.split('?')[0]}: {before_rows:,} rows; prune: {out.decode().strip()}")
    print(f"  prune took {load.elapsed['during']:.1f} s")
    for phase in ("before", "during"):
        summary = _summary(load.latencies[phase], load.elapsed[phase], load.depth[phase])
        print(f"  {phase:6} {summary}")
    print(f"  calls answered {answered:,}, rows written {written:,}, dropped {dropped:,}")


async def drop_schema(url: str) -> None:
    import asyncpg

    dsn, schema = url.split("?schema=")
    conn = await asyncpg.connect(dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


async def _rows(db: str) -> int:
    store = open_store(db)
    await store.open()
    rows = await store.fetch("SELECT COUNT(*) AS n FROM requests")
    await store.close()
    return int(rows[0]["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="SQLite store from bench/gen_store.py")
    parser.add_argument("--pg", help="also run on PostgreSQL at this URL (a fresh schema)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before")
    parser.add_argument("--workdir", default="/tmp/relaylog-prune-bench")
    parser.add_argument(
        "--older-than", default="0m", help="what the prune deletes (e.g. 80d: the oldest tenth)"
    )
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / "pruned.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    shutil.copy(args.db, copy)
    asyncio.run(run(str(copy), workdir, args))
    if args.pg:
        url = f"{args.pg}?schema=prune_bench_{uuid.uuid4().hex[:8]}"
        try:
            asyncio.run(copy_to_postgres(Path(args.db), url))
            asyncio.run(run(url, workdir, args))
        finally:
            asyncio.run(drop_schema(url))


if __name__ == "__main__":
    main()
