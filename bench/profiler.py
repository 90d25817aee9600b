"""Profile relaylog (or the baseline) in-process under load, with pyinstrument or cProfile.

    pip install pyinstrument
    python bench/profiler.py [--target relaylog|baseline] [--connections 16] [--seconds 10]
    python bench/profiler.py --profiler cprofile --top 25     # exact per-function times

Starts the same nginx stub as bench/run.py, runs the chosen proxy inside this process with a
pyinstrument profiler on the event-loop thread, drives it with wrk for --seconds and prints the
call tree (also written as HTML with --html). Use --loop asyncio to see Python frames that uvloop's
C loop otherwise hides from the sampler; the handler and writer code is the same either way.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(1, str(BENCH_DIR.parent))

import baseline  # noqa: E402
import harness  # noqa: E402

from proxy.app import create_app  # noqa: E402
from proxy.config import load_settings  # noqa: E402
from proxy.server import with_writer_process  # noqa: E402


async def profile(args: argparse.Namespace, upstream: str, workdir: Path) -> str:
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
    args = parser.parse_args()
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
