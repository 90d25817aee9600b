"""The benchmark's non-timing parts: the baseline proxy forwards, the stub config, the verdicts."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bench import baseline, run
from proxy.sandbox import create_sandbox_app

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "through the baseline"}]}


@pytest.fixture
async def bare_proxy(
    aiohttp_client: Any,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    sandbox = TestServer(create_sandbox_app())
    await sandbox.start_server()
    yield await aiohttp_client(baseline.create_app(str(sandbox.make_url("/v1"))))
    await sandbox.close()


async def test_baseline_forwards_a_chat_call(
    bare_proxy: TestClient[web.Request, web.Application],
) -> None:
    response = await bare_proxy.post("/v1/chat/completions?x=1", json=CHAT)
    assert response.status == 200
    body = await response.json()
    assert body["choices"][0]["message"]["content"] == "Echo: through the baseline"
    assert "helicone-id" not in response.headers


async def test_baseline_streams_and_passes_errors_through(
    bare_proxy: TestClient[web.Request, web.Application],
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
    conf = run.nginx_conf(run.Path("/tmp/x"), {"direct": 1111, "relaylog": 2222}, 50)
    assert "listen 127.0.0.1:1111" in conf and "listen 127.0.0.1:2222" in conf
    assert "daemon off;" in conf and "pid /tmp/x/nginx.pid;" in conf
    assert "0.0.0.0" not in conf and "listen 80" not in conf
    assert "limit_rate 50;" in conf
    assert run._nginx_string(b"a'b\\c\nd") == "'a\\'b\\\\c\\nd'"
    # The SSE body is a complete stream relaylog can assemble.
    assert run.SSE_BODY.endswith(b"data: [DONE]\n\n")
    assert orjson.loads(run.SSE_BODY.split(b"\n\n")[1].removeprefix(b"data: "))["object"] == (
        "chat.completion.chunk"
    )


def test_missing_tools_are_named_with_their_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(run.shutil, "which", lambda *a, **k: None)
    with pytest.raises(run.BenchError) as caught:
        run.find_tools()
    assert "wrk not found: apt-get install wrk" in str(caught.value)
    assert "nginx not found: apt-get install nginx-light" in str(caught.value)


def _round(direct: float, base: float, relay: float, p50: tuple[int, int, int]) -> dict[str, Any]:
    def one(rps: float, latency_p50: int) -> dict[str, Any]:
        return {
            "load": {"rps": rps, "requests": int(rps)},
            "latency": {"latency_us": {"p50": latency_p50, "p99": latency_p50 * 3}, "requests": 1},
            "ttfb": {"p50_ms": latency_p50 / 1000 + 0.2, "p99_ms": 1.0, "count": 1},
        }

    return {
        "direct": one(direct, p50[0]),
        "baseline": one(base, p50[1]),
        "relaylog": one(relay, p50[2]),
    }


def _result(rows: int, served: int, relay_rps: float) -> dict[str, Any]:
    rounds = [_round(20000, 4000, relay_rps, (40, 300, 350)) for _ in range(3)]
    held = {"held": 10, "completed": 10, "rss_held_kib": 50_000, "errors": []}
    result: dict[str, Any] = {
        "config": {
            "rounds": 3,
            "duration_s": 1,
            "connections": 16,
            "store": "sqlite",
            "uvloop": True,
            "cpus": 2,
            "loadavg_start": "0.0",
            "streams": 10,
            "workers": 1,
        },
        "loadavg_end": "0.0",
        "summary": run.summarise(rounds),
        "open_streams": {t: {"rounds": [held, copy.deepcopy(held)]} for t in run.TARGETS},
        "peak_rss_mib": {"direct": 10.0, "baseline": 40.0, "relaylog": 60.0},
        "log": {"rows": rows, "served": served},
    }
    result["targets"] = run.check_targets(result, 10)
    return result


def test_verdicts_follow_the_design_targets() -> None:
    good = _result(rows=500, served=500, relay_rps=3600)
    assert all(check["met"] for check in good["targets"]), good["targets"]
    assert good["summary"]["relaylog"]["added_p50_ms"] == pytest.approx(0.31)
    assert good["summary"]["rps_ratio"] == pytest.approx(0.9)
    table = run.markdown(good)
    assert "| requests/s @16 conns | 20,000 | 4,000 | 3,600 | 0.90 |" in table

    bad = _result(rows=499, served=500, relay_rps=3000)
    verdicts = {check["target"]: check["met"] for check in bad["targets"]}
    assert verdicts["throughput @16 >= 80% of baseline"] is False
    assert verdicts["rows logged == responses served"] is False
    assert verdicts["added p50 @1 <= 0.35 ms"] is True
