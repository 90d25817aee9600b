"""Property rows carry their request's created_at (migration 011) through every write."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

import storage.sql as sql_store
from storage import Row, Store, open_store
from storage.migrations import MIGRATIONS
from storage.retention import prune

VERSIONS = ("v1", "v2", "v3")
APPS = ("chat", "search")


def random_row(rng: random.Random, request_id: str) -> Row:
    properties = {"app": rng.choice(APPS)}
    if rng.random() < 0.8:
        properties["prompt_version"] = rng.choice(VERSIONS)
    return Row(
        id=request_id,
        created_at=f"2026-03-{rng.randrange(1, 9):02d}T{rng.randrange(24):02d}:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model=rng.choice(("gpt-4o", "gpt-4o-mini")),
        properties=properties,
    )


async def property_rows(store: Store) -> list[tuple[str, str, str, str | None]]:
    rows = await store.fetch("SELECT request_id, key, value, created_at FROM request_properties")
    return sorted((r["request_id"], r["key"], r["value"], r["created_at"]) for r in rows)


async def expected_rows(store: Store) -> list[tuple[str, str, str, str | None]]:
    """Each stored request's properties (its JSON) with its created_at."""
    rows = await store.fetch("SELECT id, created_at, properties FROM requests")
    return sorted(
        (r["id"], key, value, r["created_at"])
        for r in rows
        for key, value in orjson.loads(r["properties"]).items()
    )


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """80 requests written in two batches, 15 of them written again (a new time and new
    properties), properties set later on 10, ratings on 50, and those before March 3 pruned."""
    opened = open_store(store_url)
    await opened.open()
    rng = random.Random(11)
    ids = [f"q{i}" for i in range(80)]
    await opened.write_batch([random_row(rng, i) for i in ids[:50]])
    # One id twice in a batch: the last row, and only its properties, are stored.
    await opened.write_batch([random_row(rng, i) for i in [*ids[50:], "q60"]])
    await opened.write_batch([random_row(rng, i) for i in rng.sample(ids, 15)])
    for request_id in rng.sample(ids, 10):
        assert await opened.set_property(request_id, "prompt_version", rng.choice(VERSIONS))
    assert not await opened.set_property("missing", "prompt_version", "v1")
    for request_id in rng.sample(ids, 50):
        await opened.upsert_feedback(request_id, rng.random() < 0.6)
    await prune(opened, "2026-03-03T00:00:00.000Z", pause_s=0)
    yield opened
    await opened.close()


async def test_every_write_path_keeps_the_request_time(store: Store) -> None:
    found = await property_rows(store)
    assert found == await expected_rows(store)
    assert found and all(created is not None for *_, created in found)
    assert min(created for *_, created in found if created) >= "2026-03-03"


async def test_an_upgraded_store_gets_the_times_of_its_property_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows written before migration 011 get their request's time when it runs."""
    path = str(tmp_path / "old.db")
    before = [name for name, _ in MIGRATIONS].index("011_property_times")
    with monkeypatch.context() as patch:
        patch.setattr(sql_store, "MIGRATIONS", MIGRATIONS[:before])
        old = open_store(path)
        await old.open()
        await old.transact(
            [
                (
                    "INSERT INTO requests (id, created_at, method, path, outcome, properties) "
                    "VALUES (?, ?, 'POST', '/', 'ok', ?)",
                    [f"o{i}", f"2026-03-0{1 + i}T10:00:00.000Z", '{"app": "chat"}'],
                )
                for i in range(3)
            ]
            + [
                (
                    "INSERT INTO request_properties (request_id, key, value) VALUES (?, ?, ?)",
                    [f"o{i}", "app", "chat"],
                )
                for i in range(3)
            ]
        )
        await old.close()
    upgraded = open_store(path)
    assert "011_property_times" in await upgraded.open()
    assert await property_rows(upgraded) == await expected_rows(upgraded)
    await upgraded.close()
