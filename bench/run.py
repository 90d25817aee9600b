"""relaylog's benchmark: direct vs a bare aiohttp proxy vs relaylog on SQLite and PostgreSQL.

    python bench/run.py [--duration 10] [--connections 16] [--rounds 3] [--stores sqlite,postgresql]

Starts a local nginx stub upstream (a fixed chat completion and a fixed SSE stream), the bare
pass-through proxy in bench/baseline.py and one `relaylog serve` process per store (bodies stored;
PostgreSQL in a fresh schema), then measures them interleaved, round after round, on 127.0.0.1:

- requests/s at --connections connections, with each server's CPU seconds (every thread and child
  process, from /proc; relaylog's counted once its log queue has drained);
- p50/p99 latency at 1 connection (wrk), time to first byte of a streamed call (aiohttp);
- --streams slow streams held open at once, twice, with RSS sampled while they are open;
- the writer at full load for --sustain seconds: rows committed per second and the queue depth;
- rows logged == responses relaylog served (nginx's own count, after a SIGTERM drain).

Prints the table with every target of DESIGN.md section 10 and whether it is met; writes the
full results as JSON (--out); exit status 1 when a target is missed. It installs nothing: a
missing tool is named with the command that installs it. Every process it starts is stopped at
the end, also on Ctrl-C or an error; the PostgreSQL schema is dropped unless --keep.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import report  # noqa: E402
from harness import BenchError, Fleet, Server  # noqa: E402

STORES = ("sqlite", "postgresql")
DEFAULT_PG = "postgresql://127.0.0.1:5432/test"
BATCH_SIZE = 500  # relaylog's default recorder.batch_size, which the run does not change


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="connections for throughput")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--ttfb-requests", type=int, default=500, help="streamed calls per round")
    parser.add_argument("--streams", type=int, default=1000, help="slow streams held at once")
    parser.add_argument(
        "--stream-seconds", type=float, default=8, help="how long one slow stream lasts"
    )
    parser.add_argument(
        "--sustain", type=float, default=60, help="seconds of full load on each store's writer"
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORES),
        help="relaylog stores to run, comma-separated (default sqlite,postgresql)",
    )
    parser.add_argument(
        "--pg-dsn", default=DEFAULT_PG, help="PostgreSQL server; the run makes its own schema"
    )
    parser.add_argument("--workers", type=int, default=1, help="relaylog serve --workers N")
    parser.add_argument(
        "--writer",
        choices=("auto", "process", "task"),
        default="auto",
        help="relaylog's recorder.writer (auto: serve's writer process)",
    )
    parser.add_argument("--out", default="bench-results.json", help="JSON results file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir and the PostgreSQL schema"
    )
    args = parser.parse_args(argv)
    args.stores = parse_stores(args.stores)
    return args


def parse_stores(value: str) -> tuple[str, ...]:
    """`sqlite,postgresql` as a tuple in the canonical order; BenchError on an unknown name."""
    names = {v.strip() for v in value.split(",") if v.strip()}
    unknown = names - set(STORES)
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"--stores takes {', '.join(STORES)}; got {', '.join(sorted(unknown)) or 'nothing'}"
        )
    return tuple(s for s in STORES if s in names)


def with_schema(dsn: str, schema: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}schema={schema}"


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def served_by_path(access_log: Path) -> dict[str, int]:
    """Calls nginx served per /v1 path, from one server's `bare` access log."""
    counts: dict[str, int] = {}
    with access_log.open() as lines:
        for line in lines:
            path = line.split()[1]
            if path.startswith("/v1/"):  # not the readiness probe run.py sent itself
                counts[path] = counts.get(path, 0) + 1
    return counts


def start_servers(
    args: argparse.Namespace,
    tools: dict[str, str],
    workdir: Path,
    fleet: Fleet,
    dbs: dict[str, str],
) -> tuple[Server, dict[str, Server]]:
    """nginx with a server block per target, the bare proxy, one relaylog per store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}
    env["RELAYLOG_RECORDER_WRITER"] = args.writer
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.REPO), env.get("PYTHONPATH")]))
    names = ("direct", "baseline", *args.stores)
    ports = {t: harness.free_port() for t in names}
    conf = workdir / "nginx.conf"
    slow_rate = max(1, int((len(harness.SSE_BODY) - 600) / args.stream_seconds))
    conf.write_text(harness.nginx_conf(workdir, ports, slow_rate))
    nginx_argv = [tools["nginx"], "-c", str(conf), "-p", str(workdir)]
    nginx_argv += ["-e", str(workdir / "nginx-error.log")]
    nginx = fleet.start("nginx", f"http://127.0.0.1:{ports['direct']}", nginx_argv, workdir, env)
    for port in ports.values():
        probe = Server("nginx", f"http://127.0.0.1:{port}", nginx.process, nginx.log)
        harness.wait_ready(probe, "/healthz")
    servers = {"direct": nginx}
    port = harness.free_port()
    servers["baseline"] = fleet.start(
        "baseline",
        f"http://127.0.0.1:{port}",
        [
            sys.executable,
            str(BENCH_DIR / "baseline.py"),
            "--port",
            str(port),
            "--upstream",
            f"http://127.0.0.1:{ports['baseline']}/v1",
        ],
        workdir,
        env,
    )
    for store in args.stores:
        port = harness.free_port()
        argv = [sys.executable, "-m", "proxy", "serve", "--db", dbs[store], "--port", str(port)]
        argv += ["--upstream", f"http://127.0.0.1:{ports[store]}/v1"]
        if args.workers != 1:
            argv += ["--workers", str(args.workers)]
        servers[store] = fleet.start(store, f"http://127.0.0.1:{port}", argv, workdir, env)
    harness.wait_ready(servers["baseline"], "/v1/ready-probe")  # nginx's 404 means ready
    for store in args.stores:
        harness.wait_ready(servers[store], "/healthz")
    return nginx, servers


def measure_round(
    args: argparse.Namespace, tools: dict[str, str], servers: dict[str, Server], n: int
) -> dict[str, Any]:
    names = list(servers)
    order = names[n % len(names) :] + names[: n % len(names)]
    this: dict[str, Any] = {}
    for target in order:
        server = servers[target]
        server.check_alive()
        relaylog = target in args.stores
        load = harness.load_with_cpu(
            tools["wrk"], server, args.connections, args.duration, args.threads, drain=relaylog
        )
        latency = harness.run_wrk(tools["wrk"], server.url, 1, args.duration, 1)
        ttfb = harness.first_byte(server.url, args.ttfb_requests)
        if relaylog:
            harness.wait_drained(server.url)
        this[target] = {"load": load, "latency": latency, "ttfb": ttfb}
        print(
            f"round {n + 1} {target:10} {load['rps']:8.0f} req/s "
            f"cpu {load['cpu_us_per_request']:6.0f} us/req  "
            f"p50 {latency['latency_us']['p50'] / 1000:.3f} ms  "
            f"p99 {latency['latency_us']['p99'] / 1000:.3f} ms  "
            f"ttfb p50 {ttfb['p50_ms']:.3f} ms",
            file=sys.stderr,
        )
    return this


def bench(
    args: argparse.Namespace, tools: dict[str, str], workdir: Path, fleet: Fleet, schema: str
) -> dict[str, Any]:
    dbs = {"sqlite": str(workdir / "relaylog.db"), "postgresql": with_schema(args.pg_dsn, schema)}
    nginx, servers = start_servers(args, tools, workdir, fleet, dbs)
    config = {
        "duration_s": args.duration,
        "connections": args.connections,
        "rounds": args.rounds,
        "wrk_threads": args.threads,
        "streams": args.streams,
        "sustain_s": args.sustain,
        "batch_size": BATCH_SIZE,
        "stores": list(args.stores),
        "workers": args.workers,
        "writer": args.writer,
        "uvloop": harness.has_uvloop(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(f"bench: {config}", file=sys.stderr)
    for server in servers.values():  # warm up connections and page caches
        harness.run_wrk(tools["wrk"], server.url, args.connections, 2, args.threads)
        harness.first_byte(server.url, 50)

    rounds = [measure_round(args, tools, servers, n) for n in range(args.rounds)]

    held: dict[str, Any] = {}
    for target, server in servers.items():
        held[target] = harness.held_streams(server, args.streams)
        print(f"open streams {target}: {held[target]['rounds']}", file=sys.stderr)

    sustained: dict[str, Any] = {}
    if args.sustain > 0:
        for store in args.stores:
            sustained[store] = harness.sustained(
                tools["wrk"], servers[store], args.connections, args.sustain, args.threads
            )
            run = sustained[store]
            print(
                f"sustained {store}: {run['rps']:.0f} req/s, {run['rows_per_s']:.0f} rows/s, "
                f"peak depth {max((d for _, d in run['depth_samples']), default=0):.0f}, "
                f"drained in {run['drain_s']:.2f}s",
                file=sys.stderr,
            )

    peak = {t: harness.memory_kib(s.process.pid)[1] / 1024 for t, s in servers.items()}
    exits = {store: servers[store].stop(signal.SIGTERM, 120) for store in args.stores}
    nginx.stop(signal.SIGQUIT, 30)  # a graceful stop flushes the buffered access logs
    log: dict[str, Any] = {}
    for store in args.stores:
        paths = served_by_path(workdir / f"upstream-{store}.log")
        outcomes = harness.count_rows(dbs[store])
        log[store] = {
            "rows": sum(outcomes.values()),
            "served": sum(paths.values()),
            "served_by_path": paths,
            "outcomes": outcomes,
            "relaylog_exit_code": exits[store],
        }
    result: dict[str, Any] = {
        "config": config,
        "stores": list(args.stores),
        "rounds": rounds,
        "summary": report.summarise(rounds, args.stores),
        "open_streams": held,
        "sustained": sustained,
        "peak_rss_mib": peak,
        "log": log,
        "loadavg_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    result["targets"] = report.check_targets(result)
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        tools = harness.find_tools()
    except (BenchError, argparse.ArgumentTypeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if not harness.has_uvloop():
        print(
            "bench: uvloop not installed (pip install 'relaylog[speed]'); "
            "relaylog and the baseline run on asyncio's default loop",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="relaylog-bench-"))
    fleet = Fleet()
    schema = f"relaylog_bench_{uuid.uuid4().hex[:12]}"
    made_schema = False
    try:
        if "postgresql" in args.stores:
            harness.postgres_schema(args.pg_dsn, schema)
            made_schema = True
        result = bench(args, tools, workdir, fleet, schema)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        fleet.stop_all()
        if args.keep:
            print(f"bench: logs and data kept in {workdir} (schema {schema})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if made_schema:
                harness.postgres_schema(args.pg_dsn, schema, drop=True)
    table = report.markdown(result)
    Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(table)
    print(f"\nfull results: {args.out}", file=sys.stderr)
    return 0 if all(c["met"] for c in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
