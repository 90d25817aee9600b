"""Retention: prune in small batches on both stores, `relaylog prune`, the periodic prune."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.cli import main
from proxy.gateway.exchange import Exchange, to_row
from proxy.gateway.recorder import Recorder
from proxy.state import STORE
from storage import Row, Store, open_store
from storage.models import utc_iso
from storage.query.datasets import create_dataset
from storage.retention import prune
from tests.helpers import ProxyFactory

DAY_S = 86400
CHAT = '{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


def row(request_id: str, days_ago: float, session: str | None = None) -> Row:
    return Row(
        id=request_id,
        created_at=utc_iso(time.time() - days_ago * DAY_S),
        method="POST",
        path="/v1/chat/completions",
        session_id=session,
        properties={"app": "chat"},
        request_body=CHAT,
        response_body='{"choices": []}',
    )


async def fill(store: Store) -> None:
    """Old (40 days), middle-aged (10 days) and new rows, rated and scored."""
    await store.write_batch(
        [
            row("old-1", 40, session="s-old"),
            row("old-2", 41),
            row("old-kept", 45),
            row("mid-1", 10, session="s-mixed"),
            row("new-1", 0.1, session="s-mixed"),
        ]
    )
    for request_id in ("old-1", "old-2", "mid-1", "new-1"):
        await store.upsert_feedback(request_id, True, "ok")
        await store.upsert_scores(request_id, {"accuracy": 90})
    await store.upsert_session_feedback("s-old", True)
    await store.upsert_session_feedback("s-mixed", False)
    await create_dataset(store, "golden", ids=["old-kept"])


async def ids(store: Store, table: str = "requests", column: str = "id") -> list[str]:
    return [r[column] for r in await store.fetch(f"SELECT {column} FROM {table} ORDER BY 1")]


async def test_prune_deletes_old_exchanges_with_their_feedback_and_clears_old_bodies(
    store_url: str,
) -> None:
    store = open_store(store_url)
    await store.open()
    await fill(store)
    now = time.time()
    before, bodies = utc_iso(now - 30 * DAY_S), utc_iso(now - 7 * DAY_S)

    dry = await prune(store, before, bodies, dry_run=True)
    assert (dry.requests, dry.bodies) == (2, 1)
    assert len(await ids(store)) == 5

    report = await prune(store, before, bodies, batch_rows=1, pause_s=0)
    assert (report.requests, report.bodies, report.sessions) == (2, 1, 1)
    assert report.batches == 3
    assert await ids(store) == ["mid-1", "new-1", "old-kept"]
    for table in ("feedback", "scores", "request_properties"):
        assert (
            await ids(store, table, "request_id")
            == ["mid-1", "new-1", "old-kept"][: 3 if table == "request_properties" else 2]
        )
    assert await ids(store, "session_feedback", "session_id") == ["s-mixed"]
    bodies_left = await store.fetch(
        "SELECT id, request_body, response_body FROM requests ORDER BY id"
    )
    assert [
        (r["id"], r["request_body"] is None, r["response_body"] is None) for r in bodies_left
    ] == [
        ("mid-1", True, True),
        ("new-1", False, False),
        ("old-kept", False, False),
    ]
    mid = await store.get_request("mid-1")
    assert mid is not None and mid["feedback"]["rating"] is True and mid["properties"]
    assert (await prune(store, before, bodies)).requests == 0
    await store.close()


async def test_the_log_writer_commits_between_prune_batches(tmp_path: Path) -> None:
    """The prune never holds the write lock for the whole run: a logged call lands mid-prune."""
    store = open_store(str(tmp_path / "p.db"))
    await store.open()
    await store.write_batch([row(f"old-{n}", 40) for n in range(40)])
    recorder = Recorder(
        store, to_row, queue_size=10, batch_size=10, retry_max_s=0.05, drain_timeout_s=2
    )
    recorder.start()
    pruning = asyncio.create_task(
        prune(store, utc_iso(time.time() - 30 * DAY_S), batch_rows=2, pause_s=0.05)
    )
    await asyncio.sleep(0)
    live = Exchange(id="live-1", started_at=time.time(), method="POST", path="/v1/x")
    recorder.begin(live)
    recorder.submit(live)
    assert await recorder.caught_up(5.0)
    assert not pruning.done()
    assert await store.request_exists("live-1")
    assert (await pruning).requests == 40
    await recorder.stop()
    await store.close()


def test_prune_command_flags_dry_run_and_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "cli.db")

    async def build() -> None:
        store = open_store(db)
        await store.open()
        await fill(store)
        await store.close()

    asyncio.run(build())
    assert main(["prune", "--db", db, "--older-than", "30d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would delete 2 exchanges" in out and "would clear 0 bodies" in out
    flags = ["--older-than", "30d", "--bodies-older-than", "1w", "--json"]
    assert main(["prune", "--db", db, *flags]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert (report["requests"], report["bodies"], report["dry_run"]) == (2, 1, False)

    assert main(["prune", "--db", db]) == 2
    assert "nothing to prune" in capsys.readouterr().err
    monkeypatch.setenv("RELAYLOG_STORE_RETENTION_DAYS", "5")
    assert main(["prune", "--db", db]) == 0
    assert "deleted 1 exchanges" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["prune", "--db", db, "--older-than", "30x"])
    assert usage.value.code == 2
    assert "is not a span" in capsys.readouterr().err


async def test_serve_prunes_by_the_retention_settings(
    make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    db = str(tmp_path / "serve.db")
    store = open_store(db)
    await store.open()
    await fill(store)
    await store.close()
    client: Any = await make_proxy(store={"db": db, "retention_days": 30, "body_retention_days": 7})
    served = client.app[STORE]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await served.request_exists("old-1"):
        assert loop.time() < deadline, "the periodic prune did not run"
        await asyncio.sleep(0.02)
    assert await ids(served) == ["mid-1", "new-1", "old-kept"]


async def test_prune_applies_the_cutoffs_to_earlier_exchanges_of_reused_ids(
    store_url: str,
) -> None:
    store = open_store(store_url)
    await store.open()

    def call(request_id: str, days_ago: float, n: int) -> Row:
        return replace(row(request_id, days_ago), request_hash=f"body-{n}")

    # Four calls under one id whose live row is new (three earlier exchanges), and two under an
    # id whose live row is old.
    for n in range(4):
        await store.write_batch([call("reused", 0.1, n)])
    for n in range(2):
        await store.write_batch([call("old-reused", 40, n)])
    now = time.time()
    for seq, days_ago in ((1, 40), (2, 10), (3, 0.1)):
        await store.transact(
            [
                (
                    "UPDATE request_history SET replaced_at = ? WHERE request_id = ? AND seq = ?",
                    [utc_iso(now - days_ago * DAY_S), "reused", seq],
                )
            ]
        )
    before, bodies = utc_iso(now - 30 * DAY_S), utc_iso(now - 7 * DAY_S)

    dry = await prune(store, before, bodies, dry_run=True)
    assert (dry.requests, dry.history, dry.history_bodies) == (1, 1, 1)
    report = await prune(store, before, bodies, batch_rows=1, pause_s=0)
    assert (report.requests, report.history, report.history_bodies) == (1, 1, 1)

    left = await store.fetch("SELECT request_id, seq, record FROM request_history ORDER BY 1, 2")
    assert [(r["request_id"], r["seq"]) for r in left] == [("reused", 2), ("reused", 3)]
    records = [orjson.loads(r["record"]) for r in left]
    assert (records[0]["request_body"], records[0]["response_body"]) == (None, None)
    assert records[1]["request_body"] == orjson.loads(CHAT)
    assert records[0]["id"] == records[1]["id"] == "reused"
    again = await prune(store, before, bodies)
    assert (again.history, again.history_bodies) == (0, 0)
    await store.close()
