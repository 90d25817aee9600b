"""The relaylog command as a user runs it: serve, SIGTERM drain, requests, show, migrate, and
every way a command can end (no store, a taken port, Ctrl-C, a closed pipe, a missing extra)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from proxy.cli import main
from proxy.cli.command import configure_logging
from tests.conftest import POSTGRES_URL
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
    assert b"Traceback" not in served.stderr.read_bytes()
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
    db = str(tmp_path / "x.db")
    assert main(["migrate", "--db", db]) == 0
    capsys.readouterr()
    assert main(["show", "nope", "--db", db]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"relaylog: no logged request with id 'nope' in sqlite:{db}"
    )


STORE_COMMANDS = [
    ["requests"],
    ["requests", "--json"],
    ["show", "some-id"],
    ["stats", "--json"],
    ["export", "--format", "csv"],
    ["dataset", "list"],
    ["dataset", "add", "best", "some-id"],
    ["dataset", "create", "best"],
    ["feedback", "some-id", "up"],
    ["cache", "stats"],
    ["prune", "--older-than", "30d"],
]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_commands_other_than_serve_and_migrate_never_create_a_store(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "typo.db"
    assert main([*command, "--db", str(db)]) == 1
    assert capsys.readouterr().err == (
        f"relaylog: no relaylog store at {db}; pass --db, or run relaylog serve or migrate first\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_a_file_that_is_not_a_store_is_left_as_it_was(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "notes.db"
    db.write_bytes(b"")
    assert main([*command, "--db", str(db)]) == 1
    assert f"{db} is not a relaylog store" in capsys.readouterr().err
    assert db.read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_commands_other_than_serve_and_migrate_never_create_a_postgresql_schema(
    command: list[str], postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--db", postgres_url]) == 1
    assert "no relaylog store in postgresql://" in capsys.readouterr().err
    schema = postgres_url.rsplit("schema=", 1)[1]

    async def schema_exists() -> bool:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1", schema
            )
        finally:
            await conn.close()
        return bool(found)

    assert not asyncio.run(schema_exists())


@pytest.mark.parametrize(
    "command",
    [["requests"], ["show", "r1"], ["stats"], ["export"], ["dataset", "list"], ["cache", "stats"]],
    ids=" ".join,
)
def test_every_store_command_names_the_store_it_read_on_stderr(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "relaylog.db")
    assert main(["migrate", "--db", db]) == 0
    capsys.readouterr()
    main([*command, "--db", db])
    captured = capsys.readouterr()
    assert captured.err.startswith(f"relaylog: store sqlite:{db}\n")
    assert "sqlite:" not in captured.out


@pytest.mark.usefixtures("bare_env")
def test_the_default_store_is_named_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stats"]) == 1
    assert "no relaylog store at ./relaylog.db; pass --db" in capsys.readouterr().err
    assert not (tmp_path / "relaylog.db").exists()


@pytest.mark.parametrize(
    "command", [["requests"], ["requests", "--json"], ["stats"], ["dataset", "list"]], ids=" ".join
)
def test_an_empty_answer_names_the_store_it_read(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "empty.db")
    assert main(["migrate", "--db", db]) == 0
    capsys.readouterr()
    assert main([*command, "--db", db]) == 0
    assert f"in sqlite:{db}" in capsys.readouterr().err


def test_export_names_the_store_it_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "empty.db")
    assert main(["migrate", "--db", db]) == 0
    capsys.readouterr()
    assert main(["export", "--db", db]) == 0
    assert capsys.readouterr().err == (
        f"relaylog: store sqlite:{db}\nexported 0 of 0 rows (sqlite:{db})\n"
    )


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["show", "nope"], 1),
        (["feedback", "nope", "up"], 1),
        (["export", "--dataset", "nope"], 1),
        (["dataset", "add", "nope", "r1"], 1),
        (["dataset", "delete", "nope"], 1),
        (["requests", "--score", "accuracy>>9"], 2),
        (["requests", "--filter", "{"], 2),
        (["stats", "--by", "weekday"], 2),
        (["feedback", "not an id", "up"], 2),
        (["prune"], 2),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else str(v),
)
def test_exit_codes_mean_the_same_in_every_command(
    command: list[str], code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 ok, 1 not found or refused, 2 usage (README, Command line)."""
    db = str(tmp_path / "codes.db")
    assert main(["migrate", "--db", db]) == 0
    assert main([*command, "--db", db]) == code
    assert capsys.readouterr().err.startswith("relaylog: ")


def test_argparse_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["requests", "--no-such-flag"])
    assert exited.value.code == 2


@pytest.mark.parametrize(
    "command", [["requests"], ["migrate"], ["serve", "--port", "0"]], ids=" ".join
)
def test_a_missing_asyncpg_names_the_extra_to_install(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("storage.postgres.asyncpg", None)
    assert main([*command, "--db", "postgresql://127.0.0.1:5432/test"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'relaylog[postgres]'" in err and "Traceback" not in err


def test_migrate_reports_applied_then_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "m.db")
    assert main(["migrate", "--db", db]) == 0
    assert "applied: 001_initial" in capsys.readouterr().out
    assert main(["migrate", "--db", db]) == 0
    assert "none pending" in capsys.readouterr().out


@pytest.fixture
def restore_log_levels() -> Iterator[None]:
    loggers = [logging.getLogger(), logging.getLogger("relaylog")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("restore_log_levels")
@pytest.mark.parametrize(
    ("flags", "relaylog_debug", "drivers_debug"),
    [((False, False), False, False), ((True, False), True, False), ((False, True), True, True)],
    ids=["default", "-v", "--log-bodies"],
)
def test_bodies_reach_stderr_only_with_log_bodies(
    flags: tuple[bool, bool], relaylog_debug: bool, drivers_debug: bool
) -> None:
    """aiosqlite logs every statement with its parameters (the bodies) at DEBUG."""
    configure_logging(*flags)
    assert logging.getLogger("relaylog.recorder").isEnabledFor(logging.DEBUG) is relaylog_debug
    for driver in ("aiosqlite", "asyncpg", "aiohttp.client"):
        assert logging.getLogger(driver).isEnabledFor(logging.DEBUG) is drivers_debug
    assert logging.getLogger("aiosqlite").isEnabledFor(logging.INFO)


@pytest.mark.usefixtures("bare_env")
def test_non_loopback_bind_without_keys_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "x.db")]) == 1
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


async def relaylog(*args: str, stdout: int = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy",
        *args,
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )


@pytest.mark.slow
async def test_serve_on_a_taken_port_says_so_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = await relaylog(
            "serve", "--port", str(port), "--upstream", "sandbox", "--db", str(tmp_path / "p.db")
        )
        _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err.decode() == f"relaylog: cannot listen on 127.0.0.1:{port}: address already in use\n"


def _holds_open(pid: int, path: Path) -> bool:
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if str(path) in os.readlink(fd):
                return True
        except FileNotFoundError:  # closed since it was listed
            continue
    return False


@pytest.mark.slow
async def test_ctrl_c_while_starting_stops_cleanly(tmp_path: Path) -> None:
    """SIGINT while serve is still opening its store (held locked by another connection):
    the start is abandoned, what it opened is closed, no traceback, exit 0."""
    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        process = await relaylog("serve", "--port", "0", "--upstream", "sandbox", "--db", str(db))
        async with asyncio.timeout(30):
            while not _holds_open(process.pid, db):
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        holder.close()
    assert process.returncode == 0, err.decode()
    assert b"listening" not in out
    assert "Traceback" not in err.decode() and "stopped while starting" in err.decode()


@pytest.mark.slow
async def test_ctrl_c_in_a_read_command_exits_130_without_a_traceback(tmp_path: Path) -> None:
    """SIGINT while `requests` waits for a store another connection holds locked."""
    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        process = await relaylog("requests", "--db", str(db))
        async with asyncio.timeout(30):
            while not _holds_open(process.pid, db):
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        holder.close()
    assert (process.returncode, out, err) == (130, b"", b"")


@pytest.mark.slow
async def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`relaylog requests | head -0`: the reader is gone before the first line."""
    db = str(tmp_path / "pipe.db")
    await run_cli("migrate", "--db", db)
    read, write = os.pipe()
    os.close(read)
    try:
        process = await relaylog("requests", "--db", db, stdout=write)
    finally:
        os.close(write)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert (process.returncode, err) == (
        0,
        b"relaylog: store sqlite:%s\nrelaylog: no logged request matches in sqlite:%s\n"
        % (db.encode(), db.encode()),
    )
