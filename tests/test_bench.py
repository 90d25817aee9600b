"""The benchmark's non-timing parts: the baseline proxy, the stub config, parsers and verdicts."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import venv
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from bench import baseline, harness, instructions, peers, report, run
from proxy.sandbox import create_sandbox_app
from tests.helpers import Client

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "through the baseline"}]}


@pytest.fixture
async def bare_proxy(
    aiohttp_client: Any,
) -> AsyncIterator[Client]:
    sandbox = TestServer(create_sandbox_app())
    await sandbox.start_server()
    yield await aiohttp_client(baseline.create_app(str(sandbox.make_url("/v1"))))
    await sandbox.close()


async def test_baseline_forwards_a_chat_call(
    bare_proxy: Client,
) -> None:
    response = await bare_proxy.post("/v1/chat/completions?x=1", json=CHAT)
    assert response.status == 200
    body = await response.json()
    assert body["choices"][0]["message"]["content"] == "Echo: through the baseline"
    assert "helicone-id" not in response.headers


async def test_baseline_streams_and_passes_errors_through(
    bare_proxy: Client,
) -> None:
    response = await bare_proxy.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.headers["Content-Type"].startswith("text/event-stream")
    text = await response.text()
    assert text.rstrip().endswith("data: [DONE]")
    failed = await bare_proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Sandbox-Fault": "status=429"}
    )
    assert failed.status == 429


def test_nginx_stub_serves_fixed_bodies_on_loopback_only() -> None:
    conf = harness.nginx_conf(Path("/tmp/x"), {"direct": 1111, "relaylog": 2222}, 50)
    assert "listen 127.0.0.1:1111" in conf and "listen 127.0.0.1:2222" in conf
    assert "daemon off;" in conf and "pid /tmp/x/nginx.pid;" in conf
    assert "0.0.0.0" not in conf and "listen 80" not in conf
    assert "limit_rate 50;" in conf
    assert harness._nginx_string(b"a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    # The SSE body is a complete stream relaylog can assemble.
    assert harness.SSE_BODY.endswith(b"data: [DONE]\n\n")
    assert orjson.loads(harness.SSE_BODY.split(b"\n\n")[1].removeprefix(b"data: "))["object"] == (
        "chat.completion.chunk"
    )


def test_missing_tools_are_named_with_their_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(harness.BenchError) as caught:
        harness.find_tools()
    assert "wrk not found: apt-get install wrk" in str(caught.value)
    assert "nginx not found: apt-get install nginx-light" in str(caught.value)


def _one(rps: float, cpu_us: float, p50_us: int, p99_us: int, ttfb_ms: float) -> dict[str, Any]:
    return {
        "load": {"rps": rps, "requests": int(rps), "cpu_us_per_request": cpu_us},
        "latency": {"latency_us": {"p50": p50_us, "p99": p99_us}, "requests": 1},
        "ttfb": {"p50_ms": ttfb_ms, "p99_ms": 1.0, "count": 1},
    }


def _round(sqlite_rps: float, postgres_rps: float, sqlite_p50_us: int = 380) -> dict[str, Any]:
    return {
        "direct": _one(20000, float("nan"), 40, 100, 0.1),
        "baseline": _one(4000, 200, 300, 900, 0.4),
        "sqlite": _one(sqlite_rps, 260, sqlite_p50_us, 1300, 0.6),
        "postgresql": _one(postgres_rps, 270, 390, 1350, 0.7),
    }


def _held(rss_kib: list[int], held: int = 10) -> dict[str, Any]:
    rounds = [{"held": held, "completed": held, "rss_held_kib": r, "errors": []} for r in rss_kib]
    return {"rounds": rounds}


def _sustained(depths: list[float], dropped: float = 0) -> dict[str, Any]:
    return {
        "rows_per_s": 3500.0,
        "dropped": dropped,
        "depth_samples": [(i * 0.25, d) for i, d in enumerate(depths)],
    }


def _result(
    rounds: list[dict[str, Any]],
    rows: int = 500,
    served: int = 500,
    sqlite_rss: tuple[int, int] = (55_000, 56_000),
    depths: tuple[float, ...] = (100, 300, 120, 280, 90, 310),
) -> dict[str, Any]:
    stores = ["sqlite", "postgresql"]
    result: dict[str, Any] = {
        "config": {
            "rounds": len(rounds),
            "duration_s": 1,
            "connections": 16,
            "uvloop": True,
            "cpus": 2,
            "loadavg_start": "0.0",
            "streams": 10,
            "sustain_s": 60,
            "batch_size": 500,
        },
        "stores": stores,
        "loadavg_end": "0.0",
        "summary": report.summarise(rounds, stores),
        "open_streams": {
            "direct": _held([10_000, 10_000]),
            "baseline": _held([40_000, 40_000]),
            "sqlite": _held(list(sqlite_rss)),
            "postgresql": _held([57_000, 57_000]),
        },
        "sustained": {s: _sustained(list(depths)) for s in stores},
        "peak_rss_mib": {"direct": 10.0, "baseline": 40.0, "sqlite": 60.0, "postgresql": 61.0},
        "log": {s: {"rows": rows, "served": served} for s in stores},
    }
    result["targets"] = report.check_targets(result)
    return result


def _verdicts(result: dict[str, Any]) -> dict[tuple[str, str], bool]:
    return {(c["store"], c["target"]): c["met"] for c in result["targets"]}


def test_ratios_are_taken_within_a_round_then_medianed() -> None:
    # Baseline 4000 in each round; sqlite 3600, 3000, 3800: per-round ratios .9, .75, .95.
    rounds = [_round(3600, 3000), _round(3000, 2900), _round(3800, 3500)]
    rounds[1]["baseline"]["load"]["rps"] = 4000
    summary = report.summarise(rounds, ["sqlite", "postgresql"])
    assert summary["sqlite"]["rps_ratio"] == pytest.approx(0.9)
    assert summary["sqlite"]["rps_ratio_each_round"] == [0.9, 0.75, 0.95]
    assert summary["sqlite"]["cpu_ratio"] == pytest.approx(1.3)
    assert summary["sqlite"]["added_p50_ms"] == pytest.approx(0.08)
    assert summary["sqlite"]["added_p99_ms"] == pytest.approx(0.4)
    assert summary["sqlite"]["added_ttfb_p50_ms"] == pytest.approx(0.5)
    # PostgreSQL against SQLite, per round: 3000/3600, 2900/3000, 3500/3800.
    assert summary["postgresql"]["vs_sqlite"] == pytest.approx(3500 / 3800)


def test_every_target_is_met_by_a_good_run_and_printed() -> None:
    good = _result([_round(3600, 3500) for _ in range(3)])
    assert all(c["met"] for c in good["targets"]), [c for c in good["targets"] if not c["met"]]
    names = {c["target"] for c in good["targets"]}
    assert {
        "throughput @c16 >= 0.85x bare",
        "CPU/request <= 1.4x bare",
        "c1 p50 <= bare + 0.1 ms",
        "c1 p99 <= bare + 0.5 ms",
        "10 open streams: RSS <= 1.5x bare, flat",
        "rows logged == responses served",
        "writer keeps up for 60s at full load",
        "throughput >= 0.8x the SQLite run",
    } <= names
    table = report.markdown(good)
    assert "| requests/s @c16 | 20,000 | 4,000 | 3,600 | 3,500 |" in table
    assert "| CPU us/request (all threads and processes) | - | 200 | 260 | 270 |" in table
    assert "| rows logged / responses served | - | - | 500 / 500 | 500 / 500 |" in table
    assert "| sqlite | c1 p50 <= bare + 0.1 ms | +0.080 ms | yes |" in table


def test_misses_are_reported_as_misses() -> None:
    bad = _result(
        [_round(3000, 2000, sqlite_p50_us=500) for _ in range(3)],
        rows=499,
        sqlite_rss=(70_000, 90_000),
        depths=(100, 200, 300, 2000, 4000, 8000),
    )
    verdicts = _verdicts(bad)
    assert verdicts[("sqlite", "throughput @c16 >= 0.85x bare")] is False
    assert verdicts[("sqlite", "c1 p50 <= bare + 0.1 ms")] is False
    assert verdicts[("sqlite", "rows logged == responses served")] is False
    assert verdicts[("sqlite", "10 open streams: RSS <= 1.5x bare, flat")] is False
    assert verdicts[("sqlite", "writer keeps up for 60s at full load")] is False
    assert verdicts[("postgresql", "throughput >= 0.8x the SQLite run")] is False
    assert verdicts[("postgresql", "10 open streams: RSS <= 1.5x bare, flat")] is True
    assert "| sqlite | rows logged == responses served | 499 / 500 | NO |" in report.markdown(bad)


def test_streams_and_writer_verdicts() -> None:
    base = _held([40_000, 40_000])["rounds"]
    assert report.streams_verdict(_held([59_000, 60_000])["rounds"], base, 10)[1] is True
    # Within the ratio but growing from one round to the next.
    measured, ok = report.streams_verdict(_held([45_000, 58_000])["rounds"], base, 10)
    assert not ok and "growing" in measured
    # Flat and small, but not every stream was held.
    measured, ok = report.streams_verdict(_held([45_000, 45_000], held=9)["rounds"], base, 10)
    assert not ok and "held 9 / 9 of 10" in measured
    assert report.streams_verdict([], base, 10) == ("not measured", False)
    steady = _sustained([50, 400, 60, 420, 30, 380])
    assert report.writer_verdict(steady, 500)[1] is True
    assert (
        report.writer_verdict(_sustained([50, 400, 60, 420, 30, 380], dropped=3), 500)[1] is False
    )
    assert report.writer_verdict(None, 500) == ("not measured", False)


def test_proc_stat_and_metrics_parsing() -> None:
    # Field 2 may hold spaces and parentheses; utime, stime, cutime, cstime are 14-17.
    stat = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 9 0 0 0 120 30 7 3 20 0 5 0"
    assert harness.parse_proc_stat(stat) == 160
    text = (
        "# HELP relaylog_log_queue_depth Exchanges waiting to be written.\n"
        "# TYPE relaylog_log_queue_depth gauge\n"
        "relaylog_log_queue_depth 17.0\n"
        "relaylog_log_rows_written_total 1234.0\n"
        'relaylog_requests_total{status="200"} 99.0\n'
    )
    values = harness.parse_metrics(text)
    assert values == {"relaylog_log_queue_depth": 17.0, "relaylog_log_rows_written_total": 1234.0}


def test_store_list_and_schema_url() -> None:
    assert run.parse_stores("postgresql, sqlite") == ("sqlite", "postgresql")
    assert run.parse_stores("sqlite") == ("sqlite",)
    with pytest.raises(argparse.ArgumentTypeError, match="mysql"):
        run.parse_stores("sqlite,mysql")
    assert run.with_schema("postgresql://h/db", "s1") == "postgresql://h/db?schema=s1"
    assert run.with_schema("postgresql://h/db?sslmode=off", "s1").endswith("&schema=s1")


def test_served_calls_are_counted_per_path(tmp_path: Any) -> None:
    log = tmp_path / "upstream.log"
    log.write_text(
        "200 /v1/chat/completions OK\n200 /healthz OK\n200 /v1/chat/completions OK\n"
        "200 /v1/stream/chat/completions OK\n"
    )
    assert run.served_by_path(log) == {
        "/v1/chat/completions": 2,
        "/v1/stream/chat/completions": 1,
    }


def test_peers_config_and_ratios() -> None:
    config = peers.litellm_config("http://127.0.0.1:1234/v1")
    assert "api_base: http://127.0.0.1:1234/v1" in config
    assert "model: openai/gpt-4o-mini" in config and "model_name: gpt-4o-mini" in config

    def one(rps: float, cpu: float, p50: int, rss: int) -> dict[str, Any]:
        return {
            "load": {"rps": rps, "cpu_us_per_request": cpu},
            "latency": {"latency_us": {"p50": p50, "p99": p50 * 4}},
            "rss_kib": rss,
        }

    rounds = [
        {
            "direct": one(20000, 10, 40, 10_000),
            "relaylog": one(3000, 300, 400, 60_000),
            "litellm": one(120, 9000, 8040, 400_000),
        }
    ]
    summary = peers.summarise(rounds)
    assert summary["ratio"]["rps"] == pytest.approx(25)
    assert summary["ratio"]["cpu_us"] == pytest.approx(300 / 9000)
    assert summary["ratio"]["added_p50_ms"] == pytest.approx(0.36 / 8.0)
    assert summary["litellm"]["added_p99_ms"] == pytest.approx((8040 * 4 - 160) / 1000)
    table = peers.markdown(
        summary,
        {
            "litellm": "1.0",
            "rounds": 1,
            "duration_s": 1,
            "connections": 16,
            "loadavg_start": "0",
            "loadavg_end": "0",
        },
    )
    assert "| requests/s @c16 | 20,000 | 3,000 | 120 | 25.0x |" in table


def test_a_missing_litellm_is_a_skip_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    class Done:
        returncode = 1
        stderr = "ERROR: No matching distribution found for litellm==0.0.0"

    monkeypatch.setattr(venv, "create", lambda *a, **k: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done())
    with pytest.raises(peers.Skipped, match="No matching distribution"):
        peers.litellm_venv("0.0.0", cache=tmp_path)
    assert not (tmp_path / "litellm-0.0.0").exists()


def test_callgrind_totals_are_summed_over_processes() -> None:
    log = "==1== Events    : Ir\n==1== Collected : 1200\n==2== Collected : 34\n"
    assert instructions.collected(log) == 1234
    # bench/ scripts import the harness as a top-level module: the class is harness.BenchError.
    with pytest.raises(Exception, match="no total") as caught:
        instructions.collected("==1== Callgrind, a call-graph generating cache profiler\n")
    assert type(caught.value).__name__ == "BenchError"


def test_listening_sockets_are_found_by_port() -> None:
    table = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0  "
        "      0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0  "
        "      0 4343 1 0000000000000000 20 4 30 10 -1\n"
    )
    assert harness.listening_inodes(table, 8080) == {"4242"}
    assert harness.listening_inodes(table, 8081) == set()


def test_a_port_is_owned_by_the_process_listening_on_it() -> None:
    import os
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert harness.owns_port(os.getpid(), port)
    assert not harness.owns_port(os.getpid(), port)


@pytest.mark.skipif(not Path("/proc/self/pagemap").exists(), reason="reads /proc/PID/pagemap")
def test_a_process_tree_counts_the_pages_its_processes_share_once() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        # Wait until the child runs the interpreter (its pages are then the interpreter's).
        while b"sys.stdin" not in Path(f"/proc/{child.pid}/cmdline").read_bytes():
            time.sleep(0.01)
        detail = harness.memory_detail(os.getpid())
        alone = harness.memory_detail(child.pid)
    finally:
        child.communicate(b"")
    assert len(detail["processes"]) >= 2 and detail["rss_sum"] > alone["rss_sum"] > 0
    if detail["method"] == "distinct pages":
        # The child maps the same interpreter and C library as this process.
        assert detail["resident"] < detail["rss_sum"]
    else:
        assert detail["resident"] == detail["rss_sum"]
