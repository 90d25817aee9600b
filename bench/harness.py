"""The benchmark's moving parts: tools, processes, the nginx stub, wrk, /proc readers, streams.

bench/run.py and bench/peers.py drive these; bench/report.py turns their results into tables.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
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
sys.path.insert(1, str(REPO))

import streams  # noqa: E402

from proxy.server import run as run_loop  # noqa: E402

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
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1
USER_SPACE_END = 1 << 47


def _frames(pid: int) -> set[int] | None:
    """The physical page frames resident in `pid`'s address space, from /proc/PID/pagemap.

    None when the frame numbers cannot be read (they read as 0 without CAP_SYS_ADMIN).
    """
    frames: set[int] = set()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            if start >= USER_SPACE_END:  # [vsyscall]
                continue
            pagemap.seek(start // (PAGE_KIB * 1024) * 8)
            entries = array.array("Q", pagemap.read((end - start) // (PAGE_KIB * 1024) * 8))
            frames.update(e & PFN_MASK for e in entries if e & PRESENT)
    if frames and not any(frames):
        return None
    frames.discard(0)
    return frames


def memory_detail(pid: int) -> dict[str, Any]:
    """Resident memory of a process and its descendants, in KiB.

    `rss_sum` adds up each process's VmRSS, so a page two processes share (the interpreter's
    and the libraries' code a writer process maps as its parent does) counts twice. `resident`
    counts every resident page of the tree once, as VmRSS does for one process; it equals
    `rss_sum` for a single process, and is `rss_sum` where the page frames cannot be read
    (`method` says which). `peak` is the sum of each process's VmHWM.
    """
    processes: dict[str, dict[str, int]] = {}
    rss_sum = peak = 0
    frames: set[int] | None = set()
    for p in _descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
            name = Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # the process has exited
        try:
            these = _frames(p) if frames is not None else None
        except OSError:  # pagemap not readable: fall back to the sum
            these = None
        fields = {}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0])
        rss_sum += fields.get("VmRSS", 0)
        peak += fields.get("VmHWM", 0)
        processes[f"{p} {name[:60].strip()}"] = fields
        frames = None if these is None or frames is None else frames | these
    resident = rss_sum if frames is None else len(frames) * PAGE_KIB
    return {
        "resident": resident,
        "rss_sum": rss_sum,
        "peak": peak,
        "method": "sum of VmRSS" if frames is None else "distinct pages",
        "processes": processes,
    }


def memory_kib(pid: int) -> tuple[int, int]:
    """(resident, peak) in KiB of the process and its descendants (see memory_detail)."""
    detail = memory_detail(pid)
    return detail["resident"], detail["peak"]


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


def listening_inodes(table: str, port: int) -> set[str]:
    """Socket inodes listening on `port` in one /proc/net/tcp{,6} table."""
    inodes = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def owns_port(pid: int, port: int) -> bool:
    """True when the process (or a descendant) holds the socket listening on `port`."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            inodes |= listening_inodes(Path(f"/proc/net/{name}").read_text(), port)
    for p in _descendants(pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{p}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd).removeprefix("socket:[").removesuffix("]") in inodes:
                        return True
    return False


def wait_ready(server: Server, probe_path: str, method: str = "GET", timeout: float = 30) -> None:
    """Wait for an HTTP answer on the server's URL, from the server itself.

    Ports are picked free and then handed to the server, so another program on the machine (a
    test suite's servers) can take one in between: an answer from anyone else ends the run.
    """
    deadline = time.monotonic() + timeout
    while True:
        server.check_alive()
        try:
            request = urllib.request.Request(server.url + probe_path, method=method, data=None)
            with urllib.request.urlopen(request, timeout=2) as response:
                response.read()
            break
        except urllib.error.HTTPError:
            break  # any HTTP answer means the server is up
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise BenchError(f"{server.name} did not answer on {server.url}") from None
            time.sleep(0.1)
    port = int(server.url.rsplit(":", 1)[1])
    if not owns_port(server.process.pid, port):
        raise BenchError(
            f"port {port} answered, but not from {server.name}: another program took it; run again"
        )


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
    """Two rounds of `count` concurrent slow streams; memory sampled while all are open."""
    out: dict[str, Any] = {"idle_rss_kib": memory_kib(server.process.pid)[0], "rounds": []}
    for _ in range(2):
        samples: list[dict[str, Any]] = []

        async def sample(samples: list[dict[str, Any]] = samples) -> None:
            for _ in range(3):
                samples.append(memory_detail(server.process.pid))
                await asyncio.sleep(0.5)

        held = run_loop(
            streams.hold_streams(
                server.url + SLOW_PATH, orjson.dumps(STREAM_REQUEST), count, sample
            )
        )
        top = max(samples, key=lambda d: d["resident"])
        out["rounds"].append(
            {
                "held": held.held,
                "completed": held.completed,
                "open_s": round(held.open_s, 3),
                "errors": sorted(set(held.errors))[:5],
                "error_count": len(held.errors),
                "rss_held_kib": top["resident"],
                "rss_sum_held_kib": top["rss_sum"],
                "rss_method": top["method"],
                "processes": top["processes"],
                "rss_after_kib": memory_kib(server.process.pid)[0],
            }
        )
    return out


def count_rows(db: str) -> dict[str, int]:
    """Rows in relaylog's store by outcome; a postgresql:// URL may carry `?schema=NAME`."""
    if db.startswith(("postgresql://", "postgres://")):
        import asyncpg

        from storage.postgres import split_url

        dsn, schema = split_url(db)

        async def fetch() -> list[Any]:
            settings = {"search_path": schema} if schema else {}
            conn = await asyncpg.connect(dsn, server_settings=settings)
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


def postgres_schema(dsn: str, schema: str, *, drop: bool = False) -> None:
    """Create (or drop) a schema of its own for one run; BenchError when the server is missing."""
    try:
        import asyncpg
    except ImportError:
        raise BenchError("asyncpg not importable: pip install -e '.[postgres]'") from None

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            if drop:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            else:
                await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()

    try:
        asyncio.run(run())
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(
            f"PostgreSQL at {dsn} is not usable ({exc}); pass --stores sqlite to skip it"
        ) from exc


# --------------------------------------------------------------------------- /proc and /metrics


def parse_proc_stat(stat: str) -> int:
    """utime + stime + cutime + cstime (clock ticks) from one /proc/PID/stat line.

    A process's utime and stime cover all its threads; cutime and cstime the children it reaped.
    """
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17.
    return sum(int(v) for v in fields[11:15])


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the process, all its threads and every descendant."""
    ticks = 0
    for p in _descendants(pid):
        try:
            ticks += parse_proc_stat(Path(f"/proc/{p}/stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
    return ticks / CLOCK_TICKS


def parse_metrics(text: str) -> dict[str, float]:
    """Sample values by name from Prometheus' text format (labelled samples are left out)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or "{" in line:
            continue
        name, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value.split()[0])
    return out


def log_queue(url: str) -> dict[str, float]:
    """relaylog's log queue from /metrics: depth, rows written, exchanges dropped."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        values = parse_metrics(response.read().decode())
    return {
        "depth": values.get("relaylog_log_queue_depth", 0.0),
        "written": values.get("relaylog_log_rows_written_total", 0.0),
        "dropped": values.get("relaylog_log_rows_dropped_total", 0.0),
    }


def wait_drained(url: str, timeout: float = 60) -> float:
    """Seconds until relaylog's log queue is empty (BenchError past `timeout`)."""
    start = time.monotonic()
    while log_queue(url)["depth"] > 0:
        if time.monotonic() - start > timeout:
            raise BenchError(f"{url}: log queue not drained after {timeout:.0f}s")
        time.sleep(0.05)
    return time.monotonic() - start


def load_with_cpu(
    wrk: str, server: Server, connections: int, duration: float, threads: int, drain: bool
) -> dict[str, Any]:
    """wrk at `connections`, with the server's CPU seconds (its whole tree) while it ran.

    With `drain`, the CPU is read once relaylog's log queue is empty, so the rows of this load
    are paid for in full.
    """
    before = cpu_seconds(server.process.pid)
    result = run_wrk(wrk, server.url, connections, duration, threads)
    if drain:
        result["drain_s"] = round(wait_drained(server.url), 3)
    result["cpu_s"] = cpu_seconds(server.process.pid) - before
    result["cpu_us_per_request"] = result["cpu_s"] / max(1, result["requests"]) * 1e6
    return result


def sustained(
    wrk: str, server: Server, connections: int, duration: float, threads: int
) -> dict[str, Any]:
    """Full load for `duration` s while relaylog's log queue is sampled every 0.25 s."""
    env = {**os.environ, "BENCH_BODY": orjson.dumps(CHAT_REQUEST).decode(), "BENCH_PATH": CHAT_PATH}
    argv = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH_DIR / "chat.lua"), server.url]
    first = log_queue(server.url)
    start = time.monotonic()
    samples: list[tuple[float, float]] = []
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True)
    try:
        while process.poll() is None:
            samples.append((time.monotonic() - start, log_queue(server.url)["depth"]))
            time.sleep(0.25)
        out = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    window = time.monotonic() - start
    last = log_queue(server.url)
    drain_s = wait_drained(server.url, timeout=300)
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk gave no result for {server.url}: {out}")
    load = orjson.loads(line.removeprefix("BENCH_JSON "))
    return {
        "duration_s": round(window, 3),
        "requests": load["requests"],
        "rps": load["requests"] / (load["duration_us"] / 1e6),
        "rows_written": last["written"] - first["written"],
        "rows_per_s": (last["written"] - first["written"]) / window,
        "dropped": last["dropped"] - first["dropped"],
        "depth_samples": samples,
        "depth_end": last["depth"],
        "drain_s": round(drain_s, 3),
    }
