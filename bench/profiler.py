"""Profile relaylog (or the baseline) in-process under load, with pyinstrument or cProfile.

    pip install pyinstrument
    python bench/profiler.py [--target relaylog|baseline] [--connections 16] [--seconds 10]
    python bench/profiler.py --profiler cprofile --top 25     # exact per-function times
    python bench/profiler.py --writer [--rows 6000] [--batch 60] [--code /other/checkout]

Starts the same nginx stub as bench/run.py, runs the chosen proxy inside this process with a
pyinstrument profiler on the event-loop thread, drives it with wrk for --seconds and prints the
call tree (also written as HTML with --html). Use --loop asyncio to see Python frames that uvloop's
C loop otherwise hides from the sampler; the handler and writer code is the same either way.

--writer profiles the log writer process's work alone, with no server, wrk or nginx: --rows
exchanges shaped like bench/run.py's wrk calls (one chat completion; every --stream-every'th
one streamed instead) go through what the writer process does with them (unpickling and
decoding a batch, `to_row`, the store's `write_batch`) on a fresh store in batches of --batch,
as the writer process runs it (inline SQLite, frozen GC). It prints the CPU time per row of
each step, the median of --repeat passes, and with --profiler cprofile the top functions of
one more pass.
--code measures another checkout's relaylog (its proxy/ and storage/), so two versions are
compared in one sitting on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pickle
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))
# relaylog itself (and harness, which imports it) is imported once --code has had its say.


async def profile(args: argparse.Namespace, upstream: str, workdir: Path) -> str:
    import baseline
    import harness
    from aiohttp import web

    from proxy.app import create_app
    from proxy.config import load_settings
    from proxy.server import with_writer_process

    if args.profiler == "pyinstrument":
        from pyinstrument import Profiler

    if args.target == "relaylog":
        settings = load_settings(
            None, {"upstream": upstream, "db": str(workdir / "relaylog.db"), "port": 0}, {}
        )
        # As `relaylog serve` runs it: with its writer process.
        app = create_app(with_writer_process(settings))
    else:
        app = baseline.create_app(upstream)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a for a in runner.addresses if isinstance(a, tuple))[1]
    url = f"http://127.0.0.1:{port}"
    wrk = await asyncio.create_subprocess_exec(
        harness.find_tools()["wrk"],
        "-t1",
        f"-c{args.connections}",
        f"-d{args.seconds:g}s",
        "-s",
        str(BENCH_DIR / "chat.lua"),
        url,
        stdout=asyncio.subprocess.PIPE,
        env={"BENCH_BODY": harness.orjson.dumps(harness.CHAT_REQUEST).decode()},
    )
    if args.profiler == "cprofile":
        # The thread's own CPU clock leaves out time spent waiting (for the GIL, for a socket).
        exact = cProfile.Profile(time.thread_time) if args.clock == "cpu" else cProfile.Profile()
        exact.enable()
        out, _ = await wrk.communicate()
        exact.disable()
    else:
        profiler = Profiler(interval=args.interval, async_mode="disabled")
        profiler.start()
        out, _ = await wrk.communicate()
        profiler.stop()
    await runner.cleanup()
    summary = [line for line in out.decode().splitlines() if "Requests/sec" in line]
    print(f"{args.target}: {' '.join(summary)} (under the profiler)", file=sys.stderr)
    if args.profiler == "cprofile":
        text = io.StringIO()
        stats = pstats.Stats(exact, stream=text)
        stats.sort_stats(args.sort).print_stats(args.top)
        return text.getvalue()
    if args.html:
        Path(args.html).write_text(profiler.output_html())
    return str(profiler.output_text(unicode=True, show_all=args.show_all))


# Per row and step, as bench/run.py's chat calls reach the writer.
CHAT_HEADERS = {
    "host": "127.0.0.1:8080",
    "content-type": "application/json",
    "content-length": "151",
    "user-agent": "OpenAI/Python 1.54.4",
    "accept": "application/json",
    "x-stainless-lang": "python",
    "x-stainless-package-version": "1.54.4",
    "x-stainless-runtime": "CPython",
}


def bench_exchanges(count: int, stream_every: int) -> list[Any]:
    """`count` exchanges as the handler hands them over for bench/run.py's calls."""
    import harness

    from proxy.gateway.exchange import Exchange
    from proxy.gateway.headers import HeliconeOptions, new_request_id

    chat = harness.orjson.dumps(harness.CHAT_REQUEST)
    stream = harness.orjson.dumps(harness.STREAM_REQUEST)
    answer = harness.orjson.dumps(harness.CHAT_RESPONSE)
    events = harness.SSE_BODY.split(b"\n\n")
    chunks = [e + b"\n\n" for e in events if e]
    started = time.time() - count / 1000
    exchanges = []
    for n in range(count):
        streamed = stream_every > 0 and n % stream_every == stream_every - 1
        request_id = new_request_id()
        ex = Exchange(
            id=request_id,
            started_at=started + n / 1000,
            method="POST",
            path=harness.STREAM_PATH if streamed else harness.CHAT_PATH,
            helicone=HeliconeOptions(request_id=request_id),
            # Objects of their own, as each call's are: pickle sends a repeated object once.
            request_headers={k: v.encode().decode() for k, v in CHAT_HEADERS.items()},
            request_content_type="application/json",
            request_body=bytes(bytearray(stream if streamed else chat)),
            response_content_type="text/event-stream" if streamed else "application/json",
            response_chunks=[bytes(bytearray(c)) for c in (chunks if streamed else [answer])],
            response_size=len(harness.SSE_BODY) if streamed else len(answer),
            is_stream=streamed,
            status=200,
            latency_ms=1.2 + (n % 7) / 10,
            ttft_ms=0.9 if streamed else None,
            attempt_log=[],
            upstream_target="http://127.0.0.1:8081",
        )
        exchanges.append(ex)
    return exchanges


async def writer_pass(args: argparse.Namespace, db: str, profiler: cProfile.Profile | None) -> Any:
    """CPU seconds of each writer step over one pass of --rows exchanges on a fresh store."""
    from proxy.gateway import writer
    from proxy.gateway.exchange import to_row
    from proxy.gateway.pricing import PriceTable
    from proxy.gateway.recorder import StoreWriter

    store = writer._store(db)
    await store.open()
    price = PriceTable.load()
    # As the writer process prices (an older checkout may not remember lookups).
    price = getattr(writer, "remembering_lookups", lambda table: table)(price)
    batches = StoreWriter(store, lambda ex: to_row(ex, price=price))
    exchanges = bench_exchanges(args.rows, args.stream_every)
    payloads = []
    clock = time.process_time
    spent = dict.fromkeys(
        ("parent: encode + pickle", "unpickle + decode", "to_row", "write_batch"), 0.0
    )
    for start in range(0, len(exchanges), args.batch):
        began = clock()
        payload = pickle.dumps(
            [writer.encode(ex) for ex in exchanges[start : start + args.batch]],
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        spent["parent: encode + pickle"] += clock() - began
        payloads.append(payload)
    del exchanges
    gc.collect()
    gc.freeze()
    gc.set_threshold(writer.YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
    try:
        if profiler is not None:
            profiler.enable()
        for payload in payloads:
            began = clock()
            batch = [writer.decode(values) for values in pickle.loads(payload)]
            decoded = clock()
            rows = await batches.rows(batch)
            converted = clock()
            await store.write_batch(rows)
            written = clock()
            spent["unpickle + decode"] += decoded - began
            spent["to_row"] += converted - decoded
            spent["write_batch"] += written - converted
        if profiler is not None:
            profiler.disable()
    finally:
        gc.unfreeze()
        await store.close()
    return spent


async def profile_writer(args: argparse.Namespace, workdir: Path) -> int:
    import proxy

    print(f"relaylog from {Path(proxy.__file__).resolve().parent.parent}", file=sys.stderr)
    passes = []
    profiler = None
    # With cProfile, one more pass runs under it, left out of the timings.
    for n in range(args.repeat + (args.profiler == "cprofile")):
        if n == args.repeat:
            profiler = cProfile.Profile()
        if args.pg:
            db = args.pg
            await reset_pg_schema(args.pg)
        else:
            db = str(workdir / f"writer-{n}.db")
        spent = await writer_pass(args, db, profiler)
        if profiler is None:
            passes.append(spent)
    if args.pg:
        await reset_pg_schema(args.pg)  # dropped at the end too
    per_row = {k: statistics.median(p[k] for p in passes) / args.rows * 1e6 for k in passes[0]}
    print(f"{args.rows} rows, batches of {args.batch}, {args.repeat} passes (median, us/row CPU):")
    for step, micros in per_row.items():
        print(f"  {step:24} {micros:8.1f}")
    child = sum(v for k, v in per_row.items() if not k.startswith("parent"))
    print(f"  {'writer process total':24} {child:8.1f}")
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(args.sort).print_stats(args.top)
        print(text.getvalue())
    return 0


async def reset_pg_schema(dsn: str) -> None:
    """Drop the schema the DSN names (each pass starts on a fresh one)."""
    import asyncpg

    from storage.postgres import split_url

    url, schema = split_url(dsn)
    if schema is None:
        raise SystemExit("--pg needs ?schema=NAME: that schema is dropped before every pass")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("relaylog", "baseline"), default="relaylog")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--interval", type=float, default=0.0005, help="sampling interval (s)")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="asyncio")
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    parser.add_argument(
        "--profiler",
        choices=("pyinstrument", "cprofile"),
        default="pyinstrument",
        help="sampling call tree, or cProfile's exact per-function times (event-loop thread)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cProfile's clock: wall time, or the event-loop thread's CPU time",
    )
    parser.add_argument("--sort", default="tottime", help="cProfile sort key")
    parser.add_argument("--top", type=int, default=30, help="cProfile entries printed")
    parser.add_argument("--show-all", action="store_true", help="include library frames")
    parser.add_argument(
        "--writer", action="store_true", help="profile the log writer's steps alone (no server)"
    )
    parser.add_argument("--rows", type=int, default=6000, help="--writer: exchanges per pass")
    parser.add_argument("--batch", type=int, default=60, help="--writer: rows per commit")
    parser.add_argument(
        "--stream-every",
        type=int,
        default=0,
        help="--writer: every Nth exchange is streamed (0: none, as bench/run.py's wrk calls)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="--writer: passes (median)")
    parser.add_argument(
        "--pg",
        help="--writer: a PostgreSQL URL with ?schema=NAME instead of SQLite (schema dropped)",
    )
    parser.add_argument("--code", help="import relaylog from this checkout instead")
    args = parser.parse_args()
    if args.code:
        sys.path.insert(0, str(Path(args.code).resolve()))
    if args.writer:
        workdir = Path(tempfile.mkdtemp(prefix="relaylog-writer-"))
        try:
            return asyncio.run(profile_writer(args, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    import harness

    tools = harness.find_tools()
    workdir = Path(tempfile.mkdtemp(prefix="relaylog-profile-"))
    fleet = harness.Fleet()
    try:
        ports = {"relaylog": harness.free_port()}
        conf = workdir / "nginx.conf"
        conf.write_text(harness.nginx_conf(workdir, ports, 100))
        nginx = fleet.start(
            "nginx",
            f"http://127.0.0.1:{ports['relaylog']}",
            [tools["nginx"], "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "err.log")],
            workdir,
            {},
        )
        harness.wait_ready(nginx, "/healthz")
        upstream = f"{nginx.url}/v1"
        if args.loop == "uvloop":
            import uvloop

            text = uvloop.run(profile(args, upstream, workdir))
        else:
            text = asyncio.run(profile(args, upstream, workdir))
    finally:
        fleet.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
