"""The recorder: batches, retries failed commits, counts drops, drains on stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.gateway.exchange import Exchange, to_row
from proxy.gateway.headers import HeliconeOptions
from proxy.gateway.recorder import Recorder
from storage import Row, open_store
from storage.errors import RowRejected, StoreError
from storage.sqlite import SQLiteStore


class FlakyStore(SQLiteStore):
    """A real SQLite store whose next `failures` commits fail."""

    def __init__(self, path: str, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.batches: list[int] = []

    async def write_batch(self, rows: Sequence[Row]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        self.batches.append(len(rows))
        await super().write_batch(rows)


def exchange(n: int) -> Exchange:
    return Exchange(
        id=f"r{n}", started_at=1_700_000_000 + n, method="POST", path="/v1/chat/completions"
    )


def recorder_for(store: Any, **overrides: Any) -> Recorder:
    options: dict[str, Any] = {
        "queue_size": 100,
        "batch_size": 10,
        "retry_max_s": 0.05,
        "drain_timeout_s": 2.0,
    }
    options.update(overrides)
    return Recorder(store, to_row, **options)


async def count(store: Any) -> int:
    return int((await store.fetch("SELECT count(*) AS n FROM requests"))[0]["n"])


async def test_failed_commits_are_retried_and_nothing_is_lost(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=3)
    await store.open()
    recorder = recorder_for(store)
    recorder.start()
    for n in range(25):
        recorder.begin(exchange(n))
        assert recorder.submit(exchange(n))
    assert recorder.is_pending("r0")
    await recorder.stop()
    assert await count(store) == 25
    assert recorder.failed_commits == 3
    assert recorder.written == 25
    assert max(store.batches) <= 10
    assert not recorder.is_pending("r0")
    await store.close()


async def test_full_queue_counts_and_logs_drops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=1000)
    await store.open()
    recorder = recorder_for(store, queue_size=5, drain_timeout_s=0.1)
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="relaylog.recorder"):
        accepted = []
        for n in range(8):
            recorder.begin(exchange(n))
            accepted.append(recorder.submit(exchange(n)))
        await asyncio.sleep(0.05)
    assert accepted == [True] * 5 + [False] * 3
    assert recorder.dropped == 3
    assert "log queue full" in caplog.text
    store.failures = 0
    await recorder.stop()
    assert await count(store) == 5
    await store.close()


async def test_shutdown_with_a_dead_store_reports_what_it_could_not_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=10_000)
    await store.open()
    recorder = recorder_for(store, drain_timeout_s=0.2)
    recorder.start()
    for n in range(3):
        recorder.begin(exchange(n))
        recorder.submit(exchange(n))
    with caplog.at_level(logging.ERROR, logger="relaylog.recorder"):
        await recorder.stop()
    assert recorder.lost_on_shutdown == 3
    assert "3 queued exchanges not written" in caplog.text
    await store.close()


async def test_unparseable_exchange_is_stored_unparsed(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "r.db"))
    await store.open()

    def broken(ex: Exchange) -> Row:
        raise ValueError("parser bug")

    recorder = Recorder(
        store, broken, queue_size=10, batch_size=10, retry_max_s=0.05, drain_timeout_s=1
    )
    recorder.start()
    recorder.begin(exchange(1))
    recorder.submit(exchange(1))
    await recorder.stop()
    row = await store.get_request("r1")
    assert row is not None and row["path"] == "/v1/chat/completions"
    await store.close()


async def test_sessions_are_pending_until_their_last_row_is_written(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=2)
    await store.open()
    recorder = recorder_for(store)
    first, second = exchange(1), exchange(2)
    first.helicone = HeliconeOptions(request_id=first.id, session_id="s1")
    second.helicone = HeliconeOptions(request_id=second.id, session_id="s1")
    recorder.begin(first)
    recorder.begin(second)
    assert recorder.is_session_pending("s1")
    recorder.submit(first)
    recorder.submit(second)
    assert recorder.is_session_pending("s1")
    recorder.start()
    await recorder.stop()
    assert not recorder.is_session_pending("s1")
    assert await count(store) == 2
    await store.close()


async def test_a_row_the_store_refuses_does_not_hold_up_the_queue(store_url: str) -> None:
    """10**30 tokens overflow the column: that row is kept bare and the others land."""
    store = open_store(store_url)
    await store.open()

    def overflowing(ex: Exchange) -> Row:
        row = to_row(ex)
        if ex.id == "r3":
            row.prompt_tokens = 10**30
            row.response_body = '{"usage": "absurd"}'
        return row

    recorder = Recorder(
        store, overflowing, queue_size=100, batch_size=10, retry_max_s=0.05, drain_timeout_s=2
    )
    recorder.start()
    for n in range(6):
        recorder.begin(exchange(n))
        recorder.submit(exchange(n))
    await recorder.stop()
    assert await count(store) == 6
    bare = await store.get_request("r3")
    assert bare is not None
    assert bare["prompt_tokens"] is None and bare["response_body"] is None
    assert "stored without bodies" in bare["error"]
    assert recorder.dropped == 0
    await store.close()


class RefusingStore(SQLiteStore):
    """A real SQLite store that refuses every write holding the row `r3`, even bare."""

    async def write_batch(self, rows: Sequence[Row]) -> None:
        if any(row.id == "r3" for row in rows):
            raise RowRejected("value out of range")
        await super().write_batch(rows)


async def test_a_dropped_row_is_counted_as_dropped_not_written(tmp_path: Path) -> None:
    store = RefusingStore(str(tmp_path / "refusing.db"))
    await store.open()
    recorder = Recorder(
        store, to_row, queue_size=100, batch_size=10, retry_max_s=0.05, drain_timeout_s=2
    )
    recorder.start()
    for n in range(6):
        recorder.begin(exchange(n))
        recorder.submit(exchange(n))
    await recorder.stop()
    assert await count(store) == 5
    assert (recorder.written, recorder.dropped) == (5, 1)
    await store.close()


async def test_caught_up_waits_for_every_row_queued_before_it(tmp_path: Path) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=2)
    await store.open()
    recorder = recorder_for(store)
    recorder.start()
    for n in range(5):
        recorder.begin(exchange(n))
        recorder.submit(exchange(n))
    assert await recorder.caught_up(5.0)
    assert recorder.settled == recorder.submitted == 5
    assert await count(store) == 5
    await recorder.stop()
    await store.close()


async def test_caught_up_gives_up_after_its_timeout_while_the_store_fails(
    tmp_path: Path,
) -> None:
    store = FlakyStore(str(tmp_path / "r.db"), failures=10_000)
    await store.open()
    recorder = recorder_for(store, drain_timeout_s=0.1)
    recorder.start()
    recorder.begin(exchange(1))
    recorder.submit(exchange(1))
    assert not await recorder.caught_up(0.2)
    assert recorder.settled == 0
    store.failures = 0
    assert await recorder.caught_up(5.0)
    await recorder.stop()
    await store.close()


# Read your writes: a read sees every exchange answered before it, without waiting in the test.

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "read me back"}]}


async def _call(client: Any, request_id: str) -> None:
    response = await client.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Request-Id": request_id}
    )
    assert response.status == 200
    await response.read()


async def _read_detail(client: Any) -> list[str]:
    response = await client.get("/v1/request/ryw-1")
    assert response.status == 200, await response.text()
    data = (await response.json())["data"]
    assert data["state"] == "logged"
    return [data["id"]]


async def _read_query(client: Any) -> list[str]:
    response = await client.post("/v1/request/query", json={"filter": "all"})
    return [row["request_id"] for row in (await response.json())["data"]]


async def _read_stats(client: Any) -> list[str]:
    response = await client.post("/v1/request/stats", json={})
    return ["ryw-1"] * (await response.json())["data"]["requests"]


async def _read_export(client: Any) -> list[str]:
    response = await client.get("/v1/export")
    return [orjson.loads(line)["id"] for line in (await response.read()).splitlines()]


@pytest.mark.parametrize("read", [_read_detail, _read_query, _read_stats, _read_export])
async def test_every_read_right_after_the_answer_sees_the_call(make_proxy: Any, read: Any) -> None:
    client = await make_proxy()
    await _call(client, "ryw-1")
    assert await read(client) == ["ryw-1"]


async def test_a_running_stream_is_shown_in_progress(make_proxy: Any) -> None:
    client = await make_proxy()
    response = await client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"Helicone-Request-Id": "ryw-live", "Sandbox-Fault": "chunk_delay_ms=150"},
    )
    assert response.status == 200
    await response.content.readany()

    live = await client.get("/v1/request/ryw-live")
    assert live.status == 200, await live.text()
    data = (await live.json())["data"]
    assert data["state"] == "in_progress"
    assert data["request_model"] == "gpt-4o-mini"
    assert data["is_stream"] is True

    await response.read()
    done = await client.get("/v1/request/ryw-live")
    data = (await done.json())["data"]
    assert data["state"] == "logged"
    assert data["outcome"] == "ok"
