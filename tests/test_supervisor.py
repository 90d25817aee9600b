"""`serve --workers` as an operator runs it: the port shared, a dead worker restarted, a crash
loop stopped, SIGTERM draining every worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.config import Settings
from proxy.errors import ServeError
from proxy.supervisor import CRASH_LIMIT, serve_workers
from tests.helpers import Served, clean_env, start_serve

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "from a worker"}]}
CALLS = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def workers_of(served: Served) -> set[int]:
    pid = served.process.pid
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (state 0A in /proc/net/tcp)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def is_listening(pid: int, port: int) -> bool:
    """True once process `pid` holds one of the sockets listening on `port`."""
    inodes = listening_inodes(port)
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return any(link[len("socket:[") : -1] in inodes for link in links if link.startswith("socket:"))


async def new_listening_worker(served: Served, known: set[int], port: int) -> int:
    """Wait (bounded) for a worker pid not in `known` that listens on the port."""
    async with asyncio.timeout(30):
        while True:
            fresh = [pid for pid in workers_of(served) - known if is_listening(pid, port)]
            if fresh:
                return fresh[0]
            await asyncio.sleep(0.05)


async def call_all(url: str, prefix: str) -> None:
    # A connection per call, so the kernel spreads them over the workers' sockets.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(CALLS):
            headers = {"Helicone-Request-Id": f"{prefix}-{n}"}
            async with session.post(
                f"{url}/v1/chat/completions", json=CHAT, headers=headers
            ) as answer:
                assert answer.status == 200


def logged_ids(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM requests")}
    conn.close()
    return ids


@pytest.mark.slow
async def test_workers_share_the_port_and_all_drain_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "workers.db"
    port = str(free_port())
    served = await start_serve(
        tmp_path, db, "--upstream", "sandbox", "--workers", "2", "--port", port
    )
    try:
        await call_all(served.url, "worker")
    finally:
        assert await served.stop() == 0
    logs = served.logs()
    assert logs.count(b"listening on") == 1 and b"| 2 workers" in logs
    assert logs.count(b"shutting down") == 2
    assert logged_ids(db) == {f"worker-{n}" for n in range(CALLS)}


@pytest.mark.slow
async def test_a_killed_worker_is_restarted_and_sigterm_still_drains_every_worker(
    tmp_path: Path,
) -> None:
    db = tmp_path / "restart.db"
    port = free_port()
    served = await start_serve(
        tmp_path, db, "--upstream", "sandbox", "--workers", "2", "--port", str(port)
    )
    try:
        first = {await new_listening_worker(served, set(), port)}
        first.add(await new_listening_worker(served, first, port))
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        replacement = await new_listening_worker(served, first, port)
        assert workers_of(served) == first - {victim} | {replacement}
        await call_all(served.url, "after")
    finally:
        assert await served.stop() == 0
    logs = served.logs().decode()
    assert f"(pid {victim}) was killed by SIGKILL; restarting it in 0.25s" in logs
    assert f"restarted (pid {replacement})" in logs
    assert logs.count("listening on") == 1 and logs.count("shutting down") == 2
    assert logged_ids(db) == {f"after-{n}" for n in range(CALLS)}


@pytest.mark.slow
async def test_a_worker_crashing_in_a_loop_stops_the_service(tmp_path: Path) -> None:
    port = free_port()
    served = await start_serve(
        tmp_path,
        tmp_path / "loop.db",
        "--upstream",
        "sandbox",
        "--workers",
        "2",
        "--port",
        str(port),
    )
    try:
        known = {await new_listening_worker(served, set(), port)}
        known.add(await new_listening_worker(served, known, port))
        victim = min(known)
        for _ in range(CRASH_LIMIT - 1):
            os.kill(victim, signal.SIGKILL)
            victim = await new_listening_worker(served, known, port)
            known.add(victim)
        os.kill(victim, signal.SIGKILL)
        code = await asyncio.wait_for(served.process.wait(), 60)
    finally:
        await served.kill()
    err = served.stderr.read_text()
    assert code == 1, err
    assert f"died {CRASH_LIMIT} times within 60s (crashing in a loop); stopped" in err
    assert err.count("restarting it in") == CRASH_LIMIT - 1
    assert "shutting down" in err, "the surviving worker drained"


@pytest.mark.slow
async def test_workers_that_cannot_listen_stop_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--db",
            str(tmp_path / "taken.db"),
            stderr=asyncio.subprocess.PIPE,
            env=clean_env(),
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in err.decode()
    assert "restarting" not in err.decode()


def test_workers_need_a_fixed_port() -> None:
    settings = Settings.model_validate({"server": {"workers": 2, "port": 0}})
    with pytest.raises(ServeError, match="fixed --port"):
        serve_workers(settings)
