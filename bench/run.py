"""relaylog's benchmark: direct vs a bare aiohttp proxy vs relaylog with full logging, one run.

    python bench/run.py [--duration 10] [--connections 16] [--rounds 3] [--store sqlite]

Starts a local nginx stub upstream (a fixed chat completion and a fixed SSE stream), the bare
pass-through proxy in bench/baseline.py and `relaylog serve` (SQLite, bodies stored), then measures
all three interleaved, round after round, on 127.0.0.1 only:

- requests/s at --connections connections and p50/p99 latency at 1 connection (wrk);
- time to first byte of a streamed call, and --streams slow streams held open at once (aiohttp);
- peak RSS of each server; rows logged == responses relaylog served (after a SIGTERM drain).

Prints a Markdown table and writes the full results as JSON (--out). It installs nothing: a
missing tool is named with the command that installs it. Every process it starts is stopped at
the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import streams  # noqa: E402

TARGETS = ("direct", "baseline", "relaylog")
CHAT_PATH = "/v1/chat/completions"
STREAM_PATH = "/v1/stream/chat/completions"
SLOW_PATH = "/v1/slow/chat/completions"

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello to the benchmark in one short sentence."},
]
CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0}
STREAM_REQUEST = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
CHAT_ID = "chatcmpl-bench0000000000000000000000"
CHAT_RESPONSE = {
    "id": CHAT_ID,
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Hello, benchmark! Nice to meet you.",
                "refusal": None,
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 27,
        "completion_tokens": 9,
        "total_tokens": 36,
        "prompt_tokens_details": {"cached_tokens": 0},
    },
    "system_fingerprint": "fp_bench",
}


def _sse_body() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
        event = {
            "id": CHAT_ID,
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_bench",
            "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            event["usage"] = usage
        return b"data: " + orjson.dumps(event) + b"\n\n"

    words = ["Hello", ",", " benchmark", "!", " Nice", " to", " meet", " you", "."]
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w}) for w in words]
    events.append(chunk({}, "stop"))
    events.append(chunk({}, usage=CHAT_RESPONSE["usage"]))
    return b"".join(events) + b"data: [DONE]\n\n"


SSE_BODY = _sse_body()


class BenchError(Exception):
    """A problem that ends the run; the message says what to do."""


# --------------------------------------------------------------------------- tools and processes


def find_tools() -> dict[str, str]:
    """wrk and nginx paths; raise BenchError naming everything that is missing."""
    found, missing = {}, []
    for tool, package in (("wrk", "wrk"), ("nginx", "nginx-light (or nginx)")):
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/local/sbin")
        if path:
            found[tool] = path
        else:
            missing.append(f"{tool} not found: apt-get install {package}")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        missing.append("aiohttp not importable: pip install -e . (from the repository root)")
    if missing:
        raise BenchError("; ".join(missing))
    return found


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(children.get(current, []))
    return out


def memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB, summed over the process and its descendants."""
    rss = hwm = 0
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@dataclass
class Fleet:
    """Every process the run started, stopped in reverse order on the way out."""

    servers: list[Server] = field(default_factory=list)

    def start(
        self, name: str, url: str, argv: list[str], workdir: Path, env: dict[str, str]
    ) -> Server:
        log = workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
                start_new_session=True,
            )
        server = Server(name, url, process, log)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop(signal.SIGQUIT if server.name == "nginx" else signal.SIGTERM, 30)


def wait_ready(server: Server, probe_path: str, method: str = "GET", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            request = urllib.request.Request(server.url + probe_path, method=method, data=None)
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise BenchError(f"{server.name} did not answer on {server.url}") from None
            time.sleep(0.1)


def _nginx_string(body: bytes) -> str:
    text = body.decode()
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def nginx_conf(workdir: Path, ports: dict[str, int], slow_rate: int) -> str:
    """One nginx worker; a server per client (same content) so each one's hits are counted."""
    servers = []
    for name, port in ports.items():
        servers.append(f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {workdir}/upstream-{name}.log bare buffer=64k flush=1s;
        location = {CHAT_PATH} {{
            default_type application/json;
            return 200 {_nginx_string(orjson.dumps(CHAT_RESPONSE))};
        }}
        location = {STREAM_PATH} {{
            default_type text/event-stream;
            return 200 {_nginx_string(SSE_BODY)};
        }}
        location = {SLOW_PATH} {{
            default_type text/event-stream;
            limit_rate_after 600;
            limit_rate {slow_rate};
            return 200 {_nginx_string(SSE_BODY)};
        }}
        location = /healthz {{ return 200 'ok'; }}
    }}""")
    temp = "\n".join(
        f"    {kind}_temp_path {workdir}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# generated by bench/run.py
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    log_format bare '$status $request_uri $request_completion';
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{temp}
{"".join(servers)}
}}
"""


# --------------------------------------------------------------------------- measurements


def run_wrk(wrk: str, url: str, connections: int, duration: float, threads: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_BODY": orjson.dumps(CHAT_REQUEST).decode(), "BENCH_PATH": CHAT_PATH}
    argv = [
        wrk,
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "chat.lua"),
        url,
    ]
    done = subprocess.run(
        argv, capture_output=True, env=env, timeout=duration + 60, check=False, text=True
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = orjson.loads(line.removeprefix("BENCH_JSON "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise BenchError(f"wrk gave no result for {url}: {done.stdout}{done.stderr}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_loop(coro: Any) -> Any:
    if has_uvloop():
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def first_byte(url: str, count: int) -> dict[str, float]:
    times = run_loop(
        streams.first_byte_times(url + STREAM_PATH, orjson.dumps(STREAM_REQUEST), count)
    )
    return {
        "count": len(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
    }


def held_streams(server: Server, count: int) -> dict[str, Any]:
    """Two rounds of `count` concurrent slow streams; RSS sampled while all are open."""
    out: dict[str, Any] = {"idle_rss_kib": memory_kib(server.process.pid)[0], "rounds": []}
    for _ in range(2):
        samples: list[int] = []

        async def sample(samples: list[int] = samples) -> None:
            for _ in range(3):
                samples.append(memory_kib(server.process.pid)[0])
                await asyncio.sleep(0.5)

        held = run_loop(
            streams.hold_streams(
                server.url + SLOW_PATH, orjson.dumps(STREAM_REQUEST), count, sample
            )
        )
        out["rounds"].append(
            {
                "held": held.held,
                "completed": held.completed,
                "open_s": round(held.open_s, 3),
                "errors": sorted(set(held.errors))[:5],
                "error_count": len(held.errors),
                "rss_held_kib": max(samples),
                "rss_after_kib": memory_kib(server.process.pid)[0],
            }
        )
    return out


def count_rows(db: str) -> dict[str, int]:
    if db.startswith(("postgresql://", "postgres://")):
        import asyncpg

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(db)
            try:
                return list(
                    await conn.fetch("SELECT outcome, count(*) FROM requests GROUP BY outcome")
                )
            finally:
                await conn.close()

        rows = asyncio.run(fetch())
    else:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            rows = conn.execute(
                "SELECT outcome, count(*) FROM requests GROUP BY outcome"
            ).fetchall()
    return {str(outcome): int(n) for outcome, n in rows}


# --------------------------------------------------------------------------- report


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds; ratios and added latency are taken within a round, then medianed."""
    out: dict[str, Any] = {}
    for target in TARGETS:
        per = [r[target] for r in rounds]
        out[target] = {
            "rps": median([p["load"]["rps"] for p in per]),
            "p50_ms": median([p["latency"]["latency_us"]["p50"] / 1000 for p in per]),
            "p99_ms": median([p["latency"]["latency_us"]["p99"] / 1000 for p in per]),
            "ttfb_p50_ms": median([p["ttfb"]["p50_ms"] for p in per]),
            "ttfb_p99_ms": median([p["ttfb"]["p99_ms"] for p in per]),
        }
        if target != "direct":
            out[target]["added_p50_ms"] = median(
                [
                    (
                        r[target]["latency"]["latency_us"]["p50"]
                        - r["direct"]["latency"]["latency_us"]["p50"]
                    )
                    / 1000
                    for r in rounds
                ]
            )
            out[target]["added_p99_ms"] = median(
                [
                    (
                        r[target]["latency"]["latency_us"]["p99"]
                        - r["direct"]["latency"]["latency_us"]["p99"]
                    )
                    / 1000
                    for r in rounds
                ]
            )
            out[target]["added_ttfb_p50_ms"] = median(
                [r[target]["ttfb"]["p50_ms"] - r["direct"]["ttfb"]["p50_ms"] for r in rounds]
            )
    out["rps_ratio"] = median(
        [r["relaylog"]["load"]["rps"] / r["baseline"]["load"]["rps"] for r in rounds]
    )
    out["rps_ratio_each_round"] = [
        round(r["relaylog"]["load"]["rps"] / r["baseline"]["load"]["rps"], 3) for r in rounds
    ]
    return out


def check_targets(result: dict[str, Any], streams_wanted: int) -> list[dict[str, Any]]:
    s = result["summary"]
    rl = s["relaylog"]
    held = result["open_streams"].get("relaylog", {}).get("rounds", [])
    flat = bool(held) and held[-1]["rss_held_kib"] <= held[0]["rss_held_kib"] * 1.10 + 4096
    loss = result["log"]
    checks = [
        ("throughput @16 >= 80% of baseline", f"{s['rps_ratio']:.0%}", s["rps_ratio"] >= 0.80),
        ("added p50 @1 <= 0.35 ms", f"{rl['added_p50_ms']:.3f} ms", rl["added_p50_ms"] <= 0.35),
        ("added p99 @1 <= 1.5 ms", f"{rl['added_p99_ms']:.3f} ms", rl["added_p99_ms"] <= 1.5),
        (
            "rows logged == responses served",
            f"{loss['rows']} / {loss['served']}",
            loss["rows"] == loss["served"] and loss["rows"] > 0,
        ),
        (
            "stream TTFB added p50 <= 1 ms",
            f"{rl['added_ttfb_p50_ms']:.3f} ms",
            rl["added_ttfb_p50_ms"] <= 1.0,
        ),
        (
            f"{streams_wanted} open streams held, flat RSS",
            " / ".join(f"{r['held']} held, {r['rss_held_kib'] / 1024:.0f} MiB" for r in held),
            bool(held)
            and all(r["held"] == streams_wanted and r["completed"] == streams_wanted for r in held)
            and flat,
        ),
    ]
    return [{"target": t, "measured": m, "met": ok} for t, m, ok in checks]


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    cfg = result["config"]
    peak = result["peak_rss_mib"]
    ratio = s["rps_ratio"]

    def row(label: str, cells: list[str]) -> str:
        return "| " + " | ".join([label, *cells]) + " |"

    def ms(value: float) -> str:
        return f"{value:.3f}"

    lines = [
        f"relaylog bench: {cfg['rounds']} rounds x {cfg['duration_s']:g}s, "
        f"{cfg['connections']} connections, store {cfg['store']}, uvloop {cfg['uvloop']}, "
        f"{cfg['cpus']} CPUs, load {cfg['loadavg_start']} -> {result['loadavg_end']}",
        "",
        "| metric | direct | baseline | relaylog | relaylog/baseline |",
        "|---|---:|---:|---:|---:|",
        row(
            f"requests/s @{cfg['connections']} conns",
            [f"{s[t]['rps']:,.0f}" for t in TARGETS] + [f"{ratio:.2f}"],
        ),
        row("p50 latency @1 conn (ms)", [ms(s[t]["p50_ms"]) for t in TARGETS] + [""]),
        row("p99 latency @1 conn (ms)", [ms(s[t]["p99_ms"]) for t in TARGETS] + [""]),
        row(
            "added p50 vs direct (ms)",
            ["-", ms(s["baseline"]["added_p50_ms"]), ms(s["relaylog"]["added_p50_ms"]), ""],
        ),
        row(
            "added p99 vs direct (ms)",
            ["-", ms(s["baseline"]["added_p99_ms"]), ms(s["relaylog"]["added_p99_ms"]), ""],
        ),
        row("stream TTFB p50 (ms)", [ms(s[t]["ttfb_p50_ms"]) for t in TARGETS] + [""]),
        row(
            "stream TTFB added p50 (ms)",
            [
                "-",
                ms(s["baseline"]["added_ttfb_p50_ms"]),
                ms(s["relaylog"]["added_ttfb_p50_ms"]),
                "",
            ],
        ),
        row(
            f"{cfg['streams']} open streams: held, RSS (MiB) round 1 / 2",
            [
                " / ".join(
                    f"{r['held']}, {r['rss_held_kib'] / 1024:.0f}"
                    for r in result["open_streams"][t]["rounds"]
                )
                for t in TARGETS
            ]
            + [""],
        ),
        row(
            "peak RSS (MiB)",
            [f"{peak[t]:.0f}" for t in TARGETS] + [f"{peak['relaylog'] / peak['baseline']:.2f}"],
        ),
        row(
            "rows logged / responses served",
            ["-", "-", f"{result['log']['rows']} / {result['log']['served']}", ""],
        ),
        "",
        "| target (DESIGN §10) | measured | met |",
        "|---|---:|:---:|",
    ]
    lines += [
        f"| {c['target']} | {c['measured']} | {'yes' if c['met'] else 'NO'} |"
        for c in result["targets"]
    ]
    lines.append("")
    lines.append(f"throughput ratio per round: {s['rps_ratio_each_round']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="connections for throughput")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--ttfb-requests", type=int, default=500, help="streamed calls per round")
    parser.add_argument("--streams", type=int, default=1000, help="slow streams held at once")
    parser.add_argument(
        "--stream-seconds", type=float, default=8, help="how long one slow stream lasts"
    )
    parser.add_argument(
        "--store", choices=("sqlite", "postgresql"), default="sqlite", help="relaylog's log store"
    )
    parser.add_argument(
        "--pg-dsn", help="postgresql://... URL for --store postgresql (a blank database)"
    )
    parser.add_argument("--workers", type=int, default=1, help="relaylog serve --workers N")
    parser.add_argument("--out", default="bench-results.json", help="JSON results file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (logs, db, nginx conf)"
    )
    return parser.parse_args(argv)


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def bench(
    args: argparse.Namespace, tools: dict[str, str], workdir: Path, fleet: Fleet
) -> dict[str, Any]:
    if args.store == "postgresql":
        if not args.pg_dsn:
            raise BenchError("--store postgresql needs --pg-dsn postgresql://user@127.0.0.1/db")
        db = args.pg_dsn
    else:
        db = str(workdir / "relaylog.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))

    ports = {t: free_port() for t in TARGETS}
    conf = workdir / "nginx.conf"
    slow_rate = max(1, int((len(SSE_BODY) - 600) / args.stream_seconds))
    conf.write_text(nginx_conf(workdir, ports, slow_rate))
    nginx = fleet.start(
        "nginx",
        f"http://127.0.0.1:{ports['direct']}",
        [
            tools["nginx"],
            "-c",
            str(conf),
            "-p",
            str(workdir),
            "-e",
            str(workdir / "nginx-error.log"),
        ],
        workdir,
        env,
    )
    for port in ports.values():
        wait_ready(
            Server("nginx", f"http://127.0.0.1:{port}", nginx.process, nginx.log), "/healthz"
        )

    baseline_port, relaylog_port = free_port(), free_port()
    baseline = fleet.start(
        "baseline",
        f"http://127.0.0.1:{baseline_port}",
        [
            sys.executable,
            str(BENCH_DIR / "baseline.py"),
            "--upstream",
            f"http://127.0.0.1:{ports['baseline']}/v1",
            "--port",
            str(baseline_port),
        ],
        workdir,
        env,
    )
    serve = [
        sys.executable,
        "-m",
        "proxy",
        "serve",
        "--upstream",
        f"http://127.0.0.1:{ports['relaylog']}/v1",
        "--db",
        db,
        "--port",
        str(relaylog_port),
    ]
    if args.workers != 1:
        serve += ["--workers", str(args.workers)]
    relaylog = fleet.start("relaylog", f"http://127.0.0.1:{relaylog_port}", serve, workdir, env)
    wait_ready(baseline, "/v1/ready-probe")  # any HTTP answer, even nginx's 404, means ready
    wait_ready(relaylog, "/healthz")
    targets = {"direct": nginx, "baseline": baseline, "relaylog": relaylog}
    urls = {
        t: s.url if t != "direct" else f"http://127.0.0.1:{ports['direct']}"
        for t, s in targets.items()
    }

    config = {
        "duration_s": args.duration,
        "connections": args.connections,
        "rounds": args.rounds,
        "wrk_threads": args.threads,
        "streams": args.streams,
        "store": args.store,
        "workers": args.workers,
        "uvloop": has_uvloop(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    print(f"bench: {config}", file=sys.stderr)
    for target in TARGETS:  # warm up connections, JITs of the mind and page caches
        run_wrk(tools["wrk"], urls[target], args.connections, 2, args.threads)
        first_byte(urls[target], 50)

    rounds = []
    for n in range(args.rounds):
        order = TARGETS[n % 3 :] + TARGETS[: n % 3]
        this: dict[str, Any] = {}
        for target in order:
            targets[target].check_alive()
            load = run_wrk(
                tools["wrk"], urls[target], args.connections, args.duration, args.threads
            )
            latency = run_wrk(tools["wrk"], urls[target], 1, args.duration, 1)
            ttfb = first_byte(urls[target], args.ttfb_requests)
            this[target] = {"load": load, "latency": latency, "ttfb": ttfb}
            print(
                f"round {n + 1} {target:9} {load['rps']:9.0f} req/s  "
                f"p50 {latency['latency_us']['p50'] / 1000:.3f} ms  "
                f"p99 {latency['latency_us']['p99'] / 1000:.3f} ms  "
                f"ttfb p50 {ttfb['p50_ms']:.3f} ms",
                file=sys.stderr,
            )
        rounds.append(this)

    open_streams = {}
    for target in TARGETS:
        open_streams[target] = held_streams(
            Server(target, urls[target], targets[target].process, targets[target].log), args.streams
        )
        print(f"open streams {target}: {open_streams[target]['rounds']}", file=sys.stderr)

    peak = {t: memory_kib(targets[t].process.pid)[1] / 1024 for t in TARGETS}
    client_completed = sum(
        r["relaylog"]["load"]["requests"]
        + r["relaylog"]["latency"]["requests"]
        + r["relaylog"]["ttfb"]["count"]
        for r in rounds
    )
    relaylog_exit = relaylog.stop(signal.SIGTERM, 120)
    nginx.stop(signal.SIGQUIT, 30)  # a graceful stop flushes the buffered access logs
    served_by_path: dict[str, int] = {}
    for line in (workdir / "upstream-relaylog.log").open():
        path = line.split()[1]
        if path.startswith("/v1/"):  # not the readiness probe run.py sent itself
            served_by_path[path] = served_by_path.get(path, 0) + 1
    served = sum(served_by_path.values())
    outcomes = count_rows(db)
    result: dict[str, Any] = {
        "config": config,
        "rounds": rounds,
        "summary": summarise(rounds),
        "open_streams": open_streams,
        "peak_rss_mib": peak,
        "log": {
            "rows": sum(outcomes.values()),
            "served": served,
            "served_by_path": served_by_path,
            "outcomes": outcomes,
            "client_completed_excluding_streams_held": client_completed,
            "relaylog_exit_code": relaylog_exit,
        },
        "loadavg_end": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    result["targets"] = check_targets(result, args.streams)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        tools = find_tools()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    if not has_uvloop():
        print(
            "bench: uvloop not installed (pip install 'relaylog[speed]'); "
            "relaylog and the baseline run on asyncio's default loop",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="relaylog-bench-"))
    fleet = Fleet()
    try:
        result = bench(args, tools, workdir, fleet)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        fleet.stop_all()
        if args.keep:
            print(f"bench: logs and data kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    table = markdown(result)
    Path(args.out).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(table)
    print(f"\nfull results: {args.out}", file=sys.stderr)
    return 0 if all(c["met"] for c in result["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
