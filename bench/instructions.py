"""Instructions per request under callgrind: the bare proxy vs relaylog, unmoved by machine load.

    python bench/instructions.py [--requests 300 1300] [--stores sqlite]

Runs each server under `valgrind --tool=callgrind` (every thread; a child process too) twice,
once per count in --requests, sends exactly that many chat calls one after another through it
to the nginx stub, stops it with SIGTERM (relaylog drains its log queue first) and reads the
instructions callgrind collected. The difference between the two runs divided by the difference
in requests is the cost of one request, start-up and shutdown cancelled out. Wall-clock figures
on a machine shared with other work move by tens of percent; these move by well under one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
from harness import BenchError, Fleet  # noqa: E402

COLLECTED = re.compile(r"Collected : (\d+)")
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}


def collected(log: str) -> int:
    """The instruction count callgrind printed on exit (summed over its `Collected` lines)."""
    counts = [int(n) for n in COLLECTED.findall(log)]
    if not counts:
        raise BenchError(f"callgrind printed no total:\n{log[-1500:]}")
    return sum(counts)


async def send(url: str, count: int) -> None:
    body = orjson.dumps(harness.CHAT_REQUEST)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(count):
            async with session.post(url + harness.CHAT_PATH, data=body, headers=HEADERS) as r:
                if r.status != 200:
                    raise BenchError(f"{url}: status {r.status}: {(await r.text())[:300]}")
                await r.read()


def one_run(
    name: str, argv: list[str], port: int, count: int, workdir: Path, env: dict[str, str]
) -> int:
    python = os.path.realpath(sys.executable)
    out = workdir / f"{name}-{count}.callgrind"
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    valgrind += ["--trace-children=yes"]
    fleet = Fleet()
    try:
        server = fleet.start(
            name, f"http://127.0.0.1:{port}", [*valgrind, python, *argv], workdir, env
        )
        probe = "/healthz" if name != "baseline" else "/v1/ready-probe"
        harness.wait_ready(server, probe, timeout=300)
        asyncio.run(send(server.url, count))
        server.stop(signal.SIGTERM, 600)
    finally:
        fleet.stop_all()
    return collected(server.log.read_text(errors="replace"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs=2, default=(300, 1300))
    parser.add_argument("--stores", default="sqlite", help="relaylog stores: sqlite,postgresql")
    parser.add_argument("--pg-dsn", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument(
        "--writer",
        choices=("auto", "process", "task"),
        default="auto",
        help="relaylog's recorder.writer (auto: serve's writer process)",
    )
    parser.add_argument("--keep", help="keep callgrind's output files in this directory")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("instructions: valgrind not found: apt-get install valgrind", file=sys.stderr)
        return 2
    tools = harness.find_tools()
    workdir = Path(tempfile.mkdtemp(prefix="relaylog-instructions-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.REPO), env.get("PYTHONPATH")]))
    env["RELAYLOG_RECORDER_WRITER"] = args.writer
    fleet = Fleet()
    schema = f"relaylog_instr_{os.getpid()}_{int(time.time())}"
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    results: dict[str, Any] = {}
    try:
        upstream_port = harness.free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(harness.nginx_conf(workdir, {"upstream": upstream_port}, 1000))
        nginx_argv = [tools["nginx"], "-c", str(conf), "-p", str(workdir)]
        nginx = fleet.start("nginx", f"http://127.0.0.1:{upstream_port}", nginx_argv, workdir, env)
        harness.wait_ready(nginx, "/healthz")
        upstream = f"{nginx.url}/v1"
        if "postgresql" in stores:
            harness.postgres_schema(args.pg_dsn, schema)
        targets: dict[str, list[str]] = {
            "baseline": [str(BENCH_DIR / "baseline.py"), "--upstream", upstream],
        }
        for store in stores:
            db = (
                str(workdir / "relaylog.db")
                if store == "sqlite"
                else f"{args.pg_dsn}?schema={schema}"
            )
            targets[store] = ["-m", "proxy", "serve", "--upstream", upstream, "--db", db]
        for name, base_argv in targets.items():
            counts = []
            for count in args.requests:
                port = harness.free_port()
                counts.append(
                    one_run(name, [*base_argv, "--port", str(port)], port, count, workdir, env)
                )
            per = (counts[1] - counts[0]) / (args.requests[1] - args.requests[0])
            results[name] = per
            print(f"{name}: {per:,.0f} instructions per request", file=sys.stderr)
    except BenchError as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 1
    finally:
        fleet.stop_all()
        if "postgresql" in stores:
            harness.postgres_schema(args.pg_dsn, schema, drop=True)
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for out in workdir.glob("*.callgrind.*"):
                shutil.move(str(out), args.keep)
        shutil.rmtree(workdir, ignore_errors=True)
    print("| server | instructions per request | x bare |")
    print("|---|---:|---:|")
    for name, per in results.items():
        print(f"| {name} | {per:,.0f} | {per / results['baseline']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
