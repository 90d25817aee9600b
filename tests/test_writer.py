"""The log writer process: rows committed off the loop, read-your-writes, a writer that dies."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from proxy.config import Settings
from proxy.gateway.exchange import Exchange
from proxy.gateway.headers import HeliconeOptions
from proxy.gateway.pricing import PriceTable
from proxy.gateway.recorder import Recorder
from proxy.gateway.sse import Summary
from proxy.gateway.writer import ProcessWriter, decode, encode, remembering_lookups
from proxy.server import with_writer_process
from proxy.state import RECORDER
from storage.errors import RowRejected, StoreError
from storage.models import Row
from storage.sqlite import SQLiteStore
from tests.helpers import ProxyFactory, settle

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello writer"}]}


def process_writer(recorder: Recorder) -> ProcessWriter:
    writer = recorder.writer
    assert isinstance(writer, ProcessWriter)
    return writer


def stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM requests"))


@pytest.mark.parametrize("threaded", [True, False])
async def test_the_inline_sqlite_store_behaves_as_the_threaded_one(
    tmp_path: Path, threaded: bool
) -> None:
    store = SQLiteStore(str(tmp_path / "inline.db"), threaded=threaded)
    await store.open()
    assert await store.fetch("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    row = Row(id="r1", created_at="2026-01-01T00:00:00.000Z", method="POST", path="/v1/x")
    await store.write_batch([row])
    await store.upsert_feedback("r1", True, "fine")
    got = await store.get_request("r1")
    assert got is not None and got["feedback"]["rating"] is True
    # A statement the data breaks (a second feedback row for one request) is refused, as in
    # the threaded store, and rolled back.
    duplicate = (
        "INSERT INTO feedback (request_id, rating, created_at, updated_at) VALUES (?, 0, ?, ?)"
    )
    with pytest.raises(RowRejected):
        await store.transact([(duplicate, ("r1", "t", "t"))])
    assert await store.fetch("SELECT rating FROM feedback") == [{"rating": 1}]
    await store.close()


def test_an_exchange_crosses_without_its_proxy_key() -> None:
    options = HeliconeOptions(
        request_id="r-1", properties={"team": "a"}, user_id="u", auth="Bearer rl-secret"
    )
    ex = Exchange(id="r-1", started_at=time.time(), method="POST", path="/v1/x", helicone=options)
    ex.capture(b'{"ok": true}')
    back = decode(encode(ex))
    assert back.helicone is not None and back.helicone.auth is None
    assert back.helicone.properties == {"team": "a"} and back.helicone.user_id == "u"
    assert back.response_chunks == [b'{"ok": true}'] and back.response_size == ex.response_size
    assert ex.helicone is not None and ex.helicone.auth == "Bearer rl-secret"


@pytest.mark.parametrize(
    "model",
    ["gpt-4o-mini", "GPT-4o-mini-2024-07-18", "openai/gpt-4o", "ft:gpt-4o-mini:org::x", "nope", ""],
)
def test_the_writer_prices_with_remembered_lookups_as_the_table_does(model: str) -> None:
    usage = Summary(prompt_tokens=1200, completion_tokens=340, cached_tokens=200)
    table = PriceTable.load(overrides=["nope=1/2"] if model == "nope" else ())
    expected = table(model, usage)
    kept = remembering_lookups(PriceTable.load(overrides=["nope=1/2"] if model == "nope" else ()))
    assert kept(model, usage) == expected
    assert kept(model, usage) == expected  # the second time from the kept lookup
    assert kept(None, usage) is None
    if model.startswith("gpt"):
        assert expected is not None and expected > 0


async def test_rows_are_committed_by_the_writer_process_and_read_back(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    proxy = await make_proxy(recorder={"writer": "process"})
    writer = process_writer(proxy.app[RECORDER])
    assert writer.pid is not None and writer.pid != os.getpid()
    ids = []
    for _ in range(5):
        answer = await proxy.post("/v1/chat/completions", json=CHAT)
        assert answer.status == 200
        ids.append(answer.headers["helicone-id"])
    # A read waits for the rows this process answered, written by the other process.
    detail = await proxy.get(f"/v1/request/{ids[-1]}")
    assert detail.status == 200
    data = (await detail.json())["data"]
    assert data["model"] == "gpt-4o-mini" and data["total_tokens"] is not None
    await settle(proxy.app)
    assert stored_ids(tmp_path / "relaylog.db") == sorted(ids)
    assert proxy.app[RECORDER].written == 5


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps")
async def test_the_writer_process_loads_no_web_framework(make_proxy: ProxyFactory) -> None:
    # Each of these packages maps a compiled module of its own once imported: aiohttp's HTTP
    # parser, Jinja2's markupsafe, pydantic's core. The writer needs none of them.
    proxy = await make_proxy(recorder={"writer": "process"})
    assert (await proxy.post("/v1/chat/completions", json=CHAT)).status == 200
    await settle(proxy.app)
    writer = process_writer(proxy.app[RECORDER])
    mapped = Path(f"/proc/{writer.pid}/maps").read_text()
    assert "/orjson/" in mapped  # what the writer does load is visible here
    for package in ("/aiohttp/", "/markupsafe/", "/pydantic_core/", "/yarl/", "/multidict/"):
        assert package not in mapped, package
    assert package in Path(f"/proc/{os.getpid()}/maps").read_text()


async def test_a_killed_writer_process_is_replaced_and_nothing_is_lost(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    proxy = await make_proxy(recorder={"writer": "process", "retry_max_s": 0.05})
    recorder = proxy.app[RECORDER]
    writer = process_writer(recorder)
    first = writer.pid
    assert first is not None
    ids = [(await proxy.post("/v1/chat/completions", json=CHAT)).headers["helicone-id"]]
    await settle(proxy.app)
    os.kill(first, signal.SIGKILL)
    for _ in range(4):
        ids.append((await proxy.post("/v1/chat/completions", json=CHAT)).headers["helicone-id"])
    await settle(proxy.app, timeout=30)
    assert writer.pid not in (None, first) and writer.starts == 2
    assert stored_ids(tmp_path / "relaylog.db") == sorted(ids)
    assert recorder.written == 5 and recorder.dropped == 0
    assert (await proxy.get("/readyz")).status == 200


async def test_a_writer_that_cannot_come_back_is_unready_until_it_does(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    proxy = await make_proxy(recorder={"writer": "process", "retry_max_s": 0.05})
    recorder = proxy.app[RECORDER]
    writer = process_writer(recorder)
    db = writer.db
    writer.db = str(tmp_path / "missing" / "relaylog.db")  # where a new writer cannot open
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    answer = await proxy.post("/v1/chat/completions", json=CHAT)
    assert answer.status == 200
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not recorder.failing:
        assert loop.time() < deadline, "the dead writer was never noticed"
        await asyncio.sleep(0.02)
    unready = await proxy.get("/readyz")
    assert unready.status == 503 and "log writes are failing" in (await unready.json())["error"]
    assert recorder.depth == 1
    writer.db = db
    await settle(proxy.app, timeout=30)
    assert stored_ids(tmp_path / "relaylog.db") == [answer.headers["helicone-id"]]
    assert (await proxy.get("/readyz")).status == 200


async def test_the_drain_on_shutdown_goes_through_the_writer_process(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    proxy = await make_proxy(recorder={"writer": "process"})
    writer = process_writer(proxy.app[RECORDER])
    ids = [
        (await proxy.post("/v1/chat/completions", json=CHAT)).headers["helicone-id"]
        for _ in range(3)
    ]
    await proxy.close()  # runs the cleanup: the recorder drains, then the writer exits
    assert writer.pid is None
    assert stored_ids(tmp_path / "relaylog.db") == sorted(ids)


async def test_an_in_memory_store_cannot_have_a_writer_process() -> None:
    with pytest.raises(StoreError, match="in-memory"):
        ProcessWriter(":memory:")


async def test_a_writer_process_that_cannot_open_the_store_fails_the_start(
    tmp_path: Path,
) -> None:
    writer = ProcessWriter(str(tmp_path / "missing" / "relaylog.db"))
    with pytest.raises(StoreError, match="could not open the store"):
        await writer.start()
    assert writer.pid is None


@pytest.mark.parametrize(
    ("db", "writer", "resolved"),
    [
        ("relaylog.db", "auto", "process"),
        (":memory:", "auto", "task"),
        ("relaylog.db", "task", "task"),
        ("postgresql://127.0.0.1/x", "auto", "process"),
    ],
)
def test_serve_runs_a_writer_process_unless_the_store_is_in_memory(
    db: str, writer: str, resolved: str
) -> None:
    settings = Settings.model_validate({"store": {"db": db}, "recorder": {"writer": writer}})
    assert with_writer_process(settings).recorder.writer == resolved
