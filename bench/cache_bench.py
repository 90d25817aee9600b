"""The response cache's cost and payoff: a HIT's added latency, and hits vs misses throughput.

    python bench/cache_bench.py [--duration 5] [--connections 16] [--rounds 3]

Starts a local nginx stub upstream (a fixed chat completion) and one `relaylog serve` with the
cache on (`RELAYLOG_CACHE_ENABLED=true`, SQLite in a temp dir), then measures, interleaved round
after round on 127.0.0.1 with wrk:

- latency at 1 connection of the same call made directly to the stub and answered by relaylog
  from the cache (a HIT: nothing goes upstream); the HIT's added p50 / p99 is the difference;
- requests/s at --connections connections of HITs (one repeated call) and of MISSes (every call's
  text differs, so each one looks up, goes upstream and stores its answer), as a ratio.

Prints medians over the rounds and writes them as JSON (--out). Every process it starts is
stopped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
from harness import BenchError, Fleet, Server  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="connections for throughput")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--out", default="cache-bench.json", help="JSON results file")
    return parser.parse_args(argv)


def wrk(
    tool: str, url: str, connections: int, duration: float, script: str, run: str
) -> dict[str, Any]:
    env = {**os.environ, "BENCH_RUN": run, "BENCH_PATH": harness.CHAT_PATH}
    env["BENCH_BODY"] = orjson.dumps(harness.CHAT_REQUEST).decode()
    argv = [tool, "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "10s"]
    argv += ["-s", str(BENCH_DIR / script), url]
    done = subprocess.run(
        argv, capture_output=True, env=env, timeout=duration + 60, check=False, text=True
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = orjson.loads(line.removeprefix("BENCH_JSON "))
            errors = sum(result["errors"].values())
            if errors:
                raise BenchError(f"wrk saw {errors} errors on {url}: {result['errors']}")
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise BenchError(f"wrk gave no result for {url}: {done.stdout}{done.stderr}")


def warm(url: str) -> None:
    """Make the repeated call once so every later one is a HIT; check that it is."""
    for expected in ("MISS", "HIT"):
        request = urllib.request.Request(
            url + harness.CHAT_PATH,
            data=orjson.dumps(harness.CHAT_REQUEST),
            headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            state = response.headers.get("Helicone-Cache")
        if state != expected:
            raise BenchError(f"expected a cache {expected}, relaylog answered {state}")


def start(tools: dict[str, str], workdir: Path, fleet: Fleet) -> tuple[Server, Server]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.REPO), env.get("PYTHONPATH")]))
    env["RELAYLOG_CACHE_ENABLED"] = "true"
    port = harness.free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(harness.nginx_conf(workdir, {"direct": port}, 1000))
    nginx_argv = [tools["nginx"], "-c", str(conf), "-p", str(workdir)]
    nginx_argv += ["-e", str(workdir / "nginx-error.log")]
    stub = fleet.start("nginx", f"http://127.0.0.1:{port}", nginx_argv, workdir, env)
    harness.wait_ready(stub, "/healthz")
    relay_port = harness.free_port()
    argv = [sys.executable, "-m", "proxy", "serve", "--db", str(workdir / "cache.db")]
    argv += ["--port", str(relay_port), "--upstream", f"http://127.0.0.1:{port}/v1"]
    relaylog = fleet.start("relaylog", f"http://127.0.0.1:{relay_port}", argv, workdir, env)
    harness.wait_ready(relaylog, "/healthz")
    warm(relaylog.url)
    return stub, relaylog


def ms(result: dict[str, Any], q: str) -> float:
    return float(result["latency_us"][q]) / 1000


def measure(args: argparse.Namespace, tool: str, stub: Server, relaylog: Server) -> dict[str, Any]:
    rounds = []
    for n in range(args.rounds):
        kinds = ["direct", "hit", "hits", "misses"]
        kinds = kinds[n % len(kinds) :] + kinds[: n % len(kinds)]
        this: dict[str, Any] = {}
        for kind in kinds:
            relaylog.check_alive()
            if kind == "direct":
                this[kind] = wrk(tool, stub.url, 1, args.duration, "chat.lua", "")
            elif kind == "hit":
                this[kind] = wrk(tool, relaylog.url, 1, args.duration, "chat.lua", "")
            elif kind == "hits":
                this[kind] = wrk(
                    tool, relaylog.url, args.connections, args.duration, "chat.lua", ""
                )
            else:
                run = f"{os.getpid()}-{n}"
                this[kind] = wrk(
                    tool, relaylog.url, args.connections, args.duration, "cache_miss.lua", run
                )
        rounds.append(this)
        print(
            f"round {n + 1}: direct p50 {ms(this['direct'], 'p50'):.3f} ms, "
            f"HIT p50 {ms(this['hit'], 'p50'):.3f} ms; "
            f"hits {this['hits']['rps']:.0f} req/s, misses {this['misses']['rps']:.0f} req/s",
            file=sys.stderr,
        )

    def median(kind: str, pick: Any) -> float:
        return statistics.median(pick(r[kind]) for r in rounds)

    direct50, direct99 = (
        median("direct", lambda r: ms(r, "p50")),
        median("direct", lambda r: ms(r, "p99")),
    )
    hit50, hit99 = median("hit", lambda r: ms(r, "p50")), median("hit", lambda r: ms(r, "p99"))
    hits, misses = median("hits", lambda r: r["rps"]), median("misses", lambda r: r["rps"])
    return {
        "direct_p50_ms": direct50,
        "direct_p99_ms": direct99,
        "hit_p50_ms": hit50,
        "hit_p99_ms": hit99,
        "hit_added_p50_ms": hit50 - direct50,
        "hit_added_p99_ms": hit99 - direct99,
        "hits_rps": hits,
        "misses_rps": misses,
        "hits_over_misses": hits / misses,
        "connections": args.connections,
        "rounds": rounds,
    }


def report(summary: dict[str, Any]) -> str:
    return "\n".join(
        [
            "| measure | value |",
            "|---|---|",
            f"| direct call to the stub, 1 connection, p50 / p99 | "
            f"{summary['direct_p50_ms']:.3f} / {summary['direct_p99_ms']:.3f} ms |",
            f"| relaylog cache HIT, 1 connection, p50 / p99 | "
            f"{summary['hit_p50_ms']:.3f} / {summary['hit_p99_ms']:.3f} ms |",
            f"| a HIT's added latency, p50 / p99 | "
            f"{summary['hit_added_p50_ms']:+.3f} / {summary['hit_added_p99_ms']:+.3f} ms |",
            f"| HITs at {summary['connections']} connections | {summary['hits_rps']:.0f} req/s |",
            f"| MISSes at {summary['connections']} connections | "
            f"{summary['misses_rps']:.0f} req/s |",
            f"| hits / misses throughput | {summary['hits_over_misses']:.2f}x |",
        ]
    )


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupted)
    fleet = Fleet()
    try:
        tools = harness.find_tools()
        with tempfile.TemporaryDirectory(prefix="relaylog-cache-bench-") as tmp:
            stub, relaylog = start(tools, Path(tmp), fleet)
            summary = measure(args, tools["wrk"], stub, relaylog)
            fleet.stop_all()
    except BenchError as exc:
        print(f"cache_bench: {exc}", file=sys.stderr)
        return 2
    finally:
        fleet.stop_all()
    Path(args.out).write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
