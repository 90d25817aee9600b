"""relaylog beside LiteLLM's proxy: the same load, the same stub upstream, in the same run.

    python bench/peers.py [--duration 10] [--rounds 3] [--litellm-version 1.100.5]

Installs `litellm[proxy]` at a pinned version into a venv of its own (under
~/.cache/relaylog-bench, reused on the next run) when the package index offers it; when it does
not, or the install fails, the run is skipped with a message saying why (exit status 0). Then
starts the nginx stub of bench/run.py, one `relaylog serve` process (SQLite, bodies stored) and
one LiteLLM proxy process (one worker, the stub as an `openai/` model), and measures them
interleaved: requests/s and CPU per request (every thread and child process) at --connections,
added latency over direct at 1 connection, and RSS. Prints the table with relaylog/LiteLLM ratios.

LiteLLM runs without a database: its request log (spend logs) needs Prisma's query engine, which
Prisma downloads at run time, so it logs less than relaylog does here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import report  # noqa: E402
from harness import BenchError, Fleet, Server  # noqa: E402

LITELLM_VERSION = "1.100.5"
CACHE = Path.home() / ".cache" / "relaylog-bench"
PEERS = ("direct", "relaylog", "litellm")


class Skipped(Exception):
    """The peer cannot be run here; the message says why."""


def litellm_venv(version: str, cache: Path = CACHE) -> Path:
    """The `litellm` executable of a venv holding litellm[proxy]==version, made when missing."""
    home = cache / f"litellm-{version}"
    exe = home / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"peers: installing litellm[proxy]=={version} into {home}", file=sys.stderr)
    shutil.rmtree(home, ignore_errors=True)
    venv.create(home, with_pip=True)
    done = subprocess.run(
        [str(home / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={version}"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0 or not exe.exists():
        shutil.rmtree(home, ignore_errors=True)
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Skipped(f"the package index does not offer litellm[proxy]=={version}: {reason}")
    return exe


def litellm_config(upstream: str) -> str:
    """LiteLLM's proxy config: the stub as the `gpt-4o-mini` model, nothing else."""
    return f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream}
      api_key: sk-bench
litellm_settings:
  drop_params: true
"""


def summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds, and relaylog/LiteLLM ratios taken within each round."""
    out: dict[str, Any] = {}
    for target in PEERS:
        out[target] = {
            "rps": report.median([r[target]["load"]["rps"] for r in rounds]),
            "cpu_us": report.median([r[target]["load"]["cpu_us_per_request"] for r in rounds]),
            "rss_mib": report.median([r[target]["rss_kib"] / 1024 for r in rounds]),
        }
        for q in ("p50", "p99"):
            out[target][f"added_{q}_ms"] = report.median(
                [
                    (
                        r[target]["latency"]["latency_us"][q]
                        - r["direct"]["latency"]["latency_us"][q]
                    )
                    / 1000
                    for r in rounds
                ]
            )
    out["ratio"] = {
        key: report.median([fn(r["relaylog"]) / fn(r["litellm"]) for r in rounds])
        for key, fn in (
            ("rps", lambda t: t["load"]["rps"]),
            ("cpu_us", lambda t: t["load"]["cpu_us_per_request"]),
            ("rss_mib", lambda t: t["rss_kib"]),
        )
    }
    out["ratio"]["added_p50_ms"] = out["relaylog"]["added_p50_ms"] / max(
        out["litellm"]["added_p50_ms"], 1e-3
    )
    return out


def markdown(summary: dict[str, Any], config: dict[str, Any]) -> str:
    s, ratio = summary, summary["ratio"]
    lines = [
        f"relaylog vs LiteLLM {config['litellm']}: {config['rounds']} rounds x "
        f"{config['duration_s']:g}s, one process each, c{config['connections']}, "
        f"load average {config['loadavg_start']} -> {config['loadavg_end']}",
        "",
        "| metric | direct | relaylog (SQLite, bodies) | LiteLLM proxy (no DB) "
        "| relaylog/LiteLLM |",
        "|---|---:|---:|---:|---:|",
        f"| requests/s @c{config['connections']} | {s['direct']['rps']:,.0f} | "
        f"{s['relaylog']['rps']:,.0f} | {s['litellm']['rps']:,.0f} | {ratio['rps']:.1f}x |",
        f"| CPU us/request | - | {s['relaylog']['cpu_us']:,.0f} | {s['litellm']['cpu_us']:,.0f} "
        f"| {ratio['cpu_us']:.3f} |",
        f"| added p50 @c1 vs direct (ms) | - | {s['relaylog']['added_p50_ms']:.3f} | "
        f"{s['litellm']['added_p50_ms']:.3f} | {ratio['added_p50_ms']:.3f} |",
        f"| added p99 @c1 vs direct (ms) | - | {s['relaylog']['added_p99_ms']:.3f} | "
        f"{s['litellm']['added_p99_ms']:.3f} | |",
        f"| RSS after load (MiB) | {s['direct']['rss_mib']:.0f} | {s['relaylog']['rss_mib']:.0f} "
        f"| {s['litellm']['rss_mib']:.0f} | {ratio['rss_mib']:.2f} |",
    ]
    return "\n".join(lines)


def bench(args: argparse.Namespace, tools: dict[str, str], workdir: Path, fleet: Fleet) -> str:
    exe = litellm_venv(args.litellm_version)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYLOG_", "LITELLM_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(harness.REPO), env.get("PYTHONPATH")]))
    ports = {t: harness.free_port() for t in PEERS}
    conf = workdir / "nginx.conf"
    conf.write_text(harness.nginx_conf(workdir, ports, 1000))
    nginx_argv = [tools["nginx"], "-c", str(conf), "-p", str(workdir)]
    nginx_argv += ["-e", str(workdir / "nginx-error.log")]
    nginx = fleet.start("nginx", f"http://127.0.0.1:{ports['direct']}", nginx_argv, workdir, env)
    for port in ports.values():
        probe = Server("nginx", f"http://127.0.0.1:{port}", nginx.process, nginx.log)
        harness.wait_ready(probe, "/healthz")
    servers = {"direct": nginx}
    port = harness.free_port()
    relaylog_argv = [sys.executable, "-m", "proxy", "serve", "--port", str(port)]
    relaylog_argv += ["--db", str(workdir / "relaylog.db")]
    relaylog_argv += ["--upstream", f"http://127.0.0.1:{ports['relaylog']}/v1"]
    servers["relaylog"] = fleet.start(
        "relaylog", f"http://127.0.0.1:{port}", relaylog_argv, workdir, env
    )
    config_file = workdir / "litellm.yaml"
    config_file.write_text(litellm_config(f"http://127.0.0.1:{ports['litellm']}/v1"))
    port = harness.free_port()
    litellm_env = {**env, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    litellm_env["NO_DOCS"] = "True"
    servers["litellm"] = fleet.start(
        "litellm",
        f"http://127.0.0.1:{port}",
        [
            str(exe),
            "--config",
            str(config_file),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        workdir,
        litellm_env,
    )
    harness.wait_ready(servers["relaylog"], "/healthz")
    harness.wait_ready(servers["litellm"], "/health/liveliness", timeout=180)
    config: dict[str, Any] = {
        "litellm": args.litellm_version,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "loadavg_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    for server in servers.values():
        harness.run_wrk(tools["wrk"], server.url, args.connections, 2, 1)
    rounds = []
    for n in range(args.rounds):
        order = PEERS[n % 3 :] + PEERS[: n % 3]
        this: dict[str, Any] = {}
        for target in order:
            server = servers[target]
            server.check_alive()
            load = harness.load_with_cpu(
                tools["wrk"], server, args.connections, args.duration, 1, drain=target == "relaylog"
            )
            latency = harness.run_wrk(tools["wrk"], server.url, 1, args.duration, 1)
            errors = sum(load["errors"].values())
            if errors > load["requests"] // 100:
                raise BenchError(f"{target}: {errors} wrk errors in {load['requests']} requests")
            rss = harness.memory_kib(server.process.pid)[0]
            this[target] = {"load": load, "latency": latency, "rss_kib": rss}
            print(
                f"round {n + 1} {target:9} {load['rps']:8.0f} req/s  "
                f"cpu {load['cpu_us_per_request']:7.0f} us/req  "
                f"p50 {latency['latency_us']['p50'] / 1000:.3f} ms  rss {rss / 1024:.0f} MiB",
                file=sys.stderr,
            )
        rounds.append(this)
    config["loadavg_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return markdown(summarise(rounds), config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="connections for throughput")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION, help="litellm to install")
    args = parser.parse_args(argv)
    try:
        tools = harness.find_tools()
    except BenchError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(130))
    workdir = Path(tempfile.mkdtemp(prefix="relaylog-peers-"))
    fleet = Fleet()
    try:
        table = bench(args, tools, workdir, fleet)
    except Skipped as exc:
        print(f"peers: LiteLLM skipped: {exc}", file=sys.stderr)
        return 0
    except BenchError as exc:
        print(f"peers: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("peers: interrupted; stopping everything", file=sys.stderr)
        return 130
    finally:
        fleet.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
