"""`relaylog cache clear` and `relaylog cache stats` against a real SQLite store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from proxy.cli import main
from storage import open_store
from storage.cache import CacheEntry


def entry(key: str, *, model: str, seed: str, age_s: float) -> CacheEntry:
    created = time.time() - age_s
    return CacheEntry(
        key=key,
        bucket=0,
        status=200,
        content_type="application/json",
        is_stream=False,
        body='{"ok": true}',
        source_request_id=None,
        model=model,
        path="/v1/chat/completions",
        seed=seed,
        created_at=created,
        expires_at=created + 30 * 86400,
    )


async def _fill(db: str) -> None:
    store = open_store(db)
    await store.open()
    for item in (
        entry("a", model="gpt-4o-mini", seed="", age_s=10),
        entry("b", model="gpt-4o", seed="", age_s=10),
        entry("c", model="gpt-4o", seed="team", age_s=3 * 86400),
    ):
        await store.cache_put(item)
    await store.close()


async def _keys(db: str) -> list[str]:
    store = open_store(db)
    await store.open()
    rows = await store.fetch("SELECT key FROM cache_entries ORDER BY key")
    await store.close()
    return [r["key"] for r in rows]


def test_cache_clear_by_filters_then_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bare_env: None
) -> None:
    db = str(tmp_path / "cache.db")
    asyncio.run(_fill(db))
    assert main(["cache", "stats", "--db", db, "--json"]) == 0
    assert '"entries":3' in capsys.readouterr().out
    assert main(["cache", "clear", "--db", db, "--older-than", "2d"]) == 0
    assert capsys.readouterr().out == "deleted 1 cache entry\n"
    assert asyncio.run(_keys(db)) == ["a", "b"]
    assert main(["cache", "clear", "--db", db, "--model", "gpt-4o", "--seed", "nope"]) == 0
    assert capsys.readouterr().out == "deleted 0 cache entries\n"
    assert main(["cache", "clear", "--db", db, "--model", "gpt-4o"]) == 0
    assert asyncio.run(_keys(db)) == ["a"]
    assert main(["cache", "clear", "--db", db]) == 0
    assert asyncio.run(_keys(db)) == []


def test_a_bad_duration_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bare_env: None
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cache", "clear", "--db", str(tmp_path / "x.db"), "--older-than", "soon"])
    assert exited.value.code == 2
    assert "not a duration" in capsys.readouterr().err
