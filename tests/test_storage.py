"""SQLite store: pragmas, migrations, upserts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import storage.sqlite as sqlite_store
from storage.base import StoreError, open_store
from storage.migrations import MIGRATIONS
from storage.models import Row


def schema(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(
            conn.execute(
                "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchall()
        )
    finally:
        conn.close()


async def test_blank_store_gets_every_migration_and_rerun_changes_nothing(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "a.db"))
    applied = await store.open()
    assert applied == [name for name, _ in MIGRATIONS]
    before = schema(tmp_path / "a.db")
    assert await store.migrate() == []
    await store.close()
    again = open_store(str(tmp_path / "a.db"))
    assert await again.open() == []
    await again.close()
    assert schema(tmp_path / "a.db") == before


@pytest.mark.parametrize("upto", range(len(MIGRATIONS)))
async def test_upgraded_old_store_matches_a_blank_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upto: int
) -> None:
    blank = open_store(str(tmp_path / "blank.db"))
    await blank.open()
    await blank.close()
    with monkeypatch.context() as patch:
        patch.setattr(sqlite_store, "MIGRATIONS", MIGRATIONS[:upto])
        old = open_store(str(tmp_path / "old.db"))
        await old.open()
        await old.close()
    upgraded = open_store(str(tmp_path / "old.db"))
    assert await upgraded.open() == [name for name, _ in MIGRATIONS[upto:]]
    await upgraded.close()
    assert schema(tmp_path / "old.db") == schema(tmp_path / "blank.db")


async def test_pragmas_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "p.db"))
    await store.open()
    rows = await store.fetch("PRAGMA journal_mode")
    assert rows == [{"journal_mode": "wal"}]
    assert (await store.fetch("PRAGMA busy_timeout"))[0]["timeout"] > 0
    await store.close()


async def test_write_batch_upserts_and_keeps_feedback(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "u.db"))
    await store.open()
    first = Row(
        id="r1",
        created_at="2026-01-01T00:00:00.000Z",
        method="POST",
        path="/v1/x",
        properties={"a": "1", "b": "2"},
        status=200,
    )
    await store.write_batch([first])
    await store.upsert_feedback("r1", True, "good")
    await store.upsert_scores("r1", {"accuracy": 92.5})
    second = Row(
        id="r1",
        created_at="2026-01-01T00:00:01.000Z",
        method="POST",
        path="/v1/x",
        properties={"a": "3"},
        status=500,
        outcome="upstream_error",
    )
    await store.write_batch([second])
    got = await store.get_request("r1")
    assert got is not None
    assert (got["status"], got["outcome"], got["properties"]) == (500, "upstream_error", {"a": "3"})
    assert got["feedback"]["rating"] is True and got["feedback"]["comment"] == "good"
    assert got["scores"] == {"accuracy": 92.5}
    assert await store.fetch("SELECT key, value FROM request_properties") == [
        {"key": "a", "value": "3"}
    ]
    await store.close()


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "nope" / "x.db"))
    with pytest.raises(StoreError, match="does not exist"):
        await store.open()
