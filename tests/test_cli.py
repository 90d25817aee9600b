"""The relaylog command as a user runs it: serve, SIGTERM drain, requests, show, migrate."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from proxy.cli import main
from tests.helpers import LISTEN, Served, clean_env, scrape, start_serve

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "from the cli test"}]}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    server = await start_serve(tmp_path, tmp_path / "cli.db", "--upstream", "sandbox")
    yield server
    await server.kill()


IN_FLIGHT = 200


@pytest.mark.slow
async def test_sigterm_finishes_in_flight_requests_and_writes_every_row(
    served: Served, tmp_path: Path
) -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(n: int) -> int:
            streamed = n % 2 == 1
            async with session.post(
                f"{served.url}/v1/chat/completions",
                json={**CHAT, "stream": streamed},
                headers={
                    "Sandbox-Fault": "chunk_delay_ms=300" if streamed else "delay_ms=2000",
                    "Helicone-Request-Id": f"term-{n}",
                },
            ) as response:
                await response.read()
                return response.status

        calls = []
        for n in range(IN_FLIGHT):
            calls.append(asyncio.create_task(call(n)))
            if n % 50 == 49:
                # Connect in waves: a burst beyond the listen backlog costs a 1 s SYN retry.
                await asyncio.sleep(0.1)
        async with asyncio.timeout(20):
            while (await scrape(session, served.url))["relaylog_requests_in_flight"] < IN_FLIGHT:
                await asyncio.sleep(0.02)
        served.process.send_signal(signal.SIGTERM)
        statuses = await asyncio.gather(*calls)
    assert statuses == [200] * IN_FLIGHT
    assert await asyncio.wait_for(served.process.wait(), 30) == 0
    out = await run_cli("requests", "--db", str(tmp_path / "cli.db"), "--limit", "1000", "--json")
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert {r["id"] for r in rows} == {f"term-{n}" for n in range(IN_FLIGHT)}
    assert {r["outcome"] for r in rows} == {"ok"}


async def run_cli(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.slow
async def test_serve_prints_one_line_and_requests_show_read_the_log(
    served: Served, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{served.url}/v1/chat/completions",
            json=CHAT,
            headers={"Helicone-Request-Id": "cli-1", "Helicone-User-Id": "alice"},
        ) as response:
            assert response.status == 200
        async with session.get(f"{served.url}/readyz") as ready:
            assert (await ready.json())["data"]["status"] == "ready"
    served.process.send_signal(signal.SIGINT)
    assert await served.process.wait() == 0
    assert LISTEN.search(served.stdout.read_bytes().splitlines()[0])
    db = str(tmp_path / "cli.db")
    table = await run_cli("requests", "--db", db, "--user", "alice")
    header, row = table.splitlines()
    assert header.split()[:3] == ["id", "created_at", "model"]
    assert row.startswith("cli-1 ") and "gpt-4o-mini" in row and " ok " in row
    assert (await run_cli("requests", "--db", db, "--user", "bob")).split() == header.split()
    shown = orjson.loads(await run_cli("show", "cli-1", "--db", db))
    assert shown["response_body"]["choices"][0]["message"]["content"] == "Echo: from the cli test"
    assert "authorization" not in shown["request_headers"]


def test_show_unknown_id_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "nope", "--db", str(tmp_path / "x.db")]) == 1
    assert "no logged request" in capsys.readouterr().err


def test_migrate_reports_applied_then_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "m.db")
    assert main(["migrate", "--db", db]) == 0
    assert "applied: 001_initial" in capsys.readouterr().out
    assert main(["migrate", "--db", db]) == 0
    assert "none pending" in capsys.readouterr().out


@pytest.mark.usefixtures("bare_env")
def test_non_loopback_bind_without_keys_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err


def test_bad_config_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = -1\n")
    assert main(["requests", "--config", str(bad), "--db", str(tmp_path / "x.db")]) == 2
    assert "server.port" in capsys.readouterr().err


@pytest.mark.slow
async def test_sandbox_command_serves_the_fake_api(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        "sandbox",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 20)
    match = LISTEN.search(line)
    assert match, line
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{match.group(1).decode()}/models") as response:
            assert "gpt-4o-mini" in {m["id"] for m in (await response.json())["data"]}
    process.terminate()
    assert await process.wait() == 0
