"""The rated rows of migration 012 (rollup_rated, and the rating on each property row) always
equal what the feedback and the requests give, and the analytics reads made from them equal
the same reads made from the feedback joined to its requests."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import storage.sql as sql_store
from storage import Row, Store, open_store
from storage.migrations import MIGRATIONS
from storage.query.analytics import rated_over_time, rated_rows, rated_split, split_by_unit
from storage.query.compare import rated_counts
from storage.query.filters import compile_filter, conjoin
from storage.retention import prune

USERS = ("alice", "bob", "carol", None)
VERSIONS = ("v1", "v2", "v3")
# True of every row, and over a column rollup_rated does not hold: the reads it is added to
# join the feedback to its requests, as before migration 012.
ON_REQUESTS = {"request": {"method": {"equals": "POST"}}}


def random_row(rng: random.Random, request_id: str) -> Row:
    properties = {"app": rng.choice(("chat", "search"))}
    if rng.random() < 0.8:
        properties["prompt_version"] = rng.choice(VERSIONS)
    return Row(
        id=request_id,
        created_at=f"2026-03-{rng.randrange(1, 6):02d}T{rng.randrange(24):02d}:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model=rng.choice(("gpt-4o", "gpt-4o-mini", None)),
        outcome=rng.choice(("ok", "ok", "upstream_error")),
        user_id=rng.choice(USERS),
        properties=properties,
        # The same body keeps a row's rating when it is written again; another moves it away.
        request_hash=rng.choice(("same", "same", "other")),
    )


async def rated(store: Store) -> list[tuple[Any, ...]]:
    rows = await store.fetch(
        "SELECT id, created_at, model, outcome, user_id, rating FROM rollup_rated"
    )
    return sorted(tuple(r.values()) for r in rows)


async def rated_from_feedback(store: Store) -> list[tuple[Any, ...]]:
    rows = await store.fetch(
        "SELECT r.id, r.created_at, r.model, r.outcome, r.user_id, f.rating "
        "FROM feedback f JOIN requests r ON r.id = f.request_id"
    )
    return sorted(tuple(r.values()) for r in rows)


async def property_ratings(store: Store) -> list[tuple[Any, ...]]:
    rows = await store.fetch("SELECT request_id, key, rating FROM request_properties")
    return sorted((r["request_id"], r["key"], r["rating"]) for r in rows)


async def property_ratings_from_feedback(store: Store) -> list[tuple[Any, ...]]:
    rows = await store.fetch(
        "SELECT p.request_id, p.key, f.rating FROM request_properties p "
        "LEFT JOIN feedback f ON f.request_id = p.request_id"
    )
    return sorted((r["request_id"], r["key"], r["rating"]) for r in rows)


async def agree(store: Store) -> None:
    assert await rated(store) == await rated_from_feedback(store)
    assert await property_ratings(store) == await property_ratings_from_feedback(store)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """60 requests, rated and re-rated, written again (some as other calls), with properties
    set later and the oldest pruned; the rated rows checked against the feedback at each step."""
    opened = open_store(store_url)
    await opened.open()
    try:
        rng = random.Random(21)
        ids = [f"q{i}" for i in range(60)]
        # Ratings that arrive before their exchange is written.
        await opened.upsert_feedback("q1", True)
        await opened.upsert_feedback("q2", False)
        await opened.write_batch([random_row(rng, i) for i in ids[:40]])
        await agree(opened)
        await opened.write_batch([random_row(rng, i) for i in ids[40:]])
        for request_id in rng.sample(ids, 35):
            await opened.upsert_feedback(request_id, rng.random() < 0.6)
        await agree(opened)
        for request_id in rng.sample(ids, 15):
            await opened.upsert_feedback(request_id, rng.random() < 0.5, "changed my mind")
        await opened.write_batch([random_row(rng, i) for i in rng.sample(ids, 20)])
        await agree(opened)
        for request_id in rng.sample(ids, 10):
            await opened.set_property(request_id, "prompt_version", rng.choice(VERSIONS))
        await agree(opened)
        await prune(opened, "2026-03-02T00:00:00.000Z", pause_s=0)
        await agree(opened)
        yield opened
    finally:
        await opened.close()


async def test_the_rated_rows_follow_every_write(store: Store) -> None:
    found = await rated(store)
    assert len(found) > 20
    assert {row[5] for row in found} == {0, 1}
    assert await store.fetch("SELECT 1 FROM rollup_rated WHERE created_at < '2026-03-02'") == []


def trees() -> list[Any]:
    span = {"request": {"created_at": {"gte": "2026-03-03T05:00", "lt": "2026-03-05"}}}
    version = {"properties": {"prompt_version": {"equals": "v1"}}}
    chat = {"properties": {"app": {"equals": "chat"}}}
    user = {"request": {"user_id": {"equals": "alice"}}}
    return [
        "all",
        span,
        version,
        conjoin(span, version),
        conjoin(span, version, chat),
        user,
        conjoin(span, user),
    ]


def ordered(groups: list[dict[str, Any]]) -> list[tuple[str, bool, int, int]]:
    return sorted(
        (
            str(sorted(g["key"].items())),
            g["rest"],
            g["feedback"]["count"],
            g["feedback"]["positive"],
        )
        for g in groups
    )


@pytest.mark.parametrize("by", ["user", "property:prompt_version", "property:app", None])
@pytest.mark.parametrize("unit", ["hour", "day"])
async def test_rated_split_agrees_with_the_feedback_joined_to_its_requests(
    store: Store, by: str | None, unit: str
) -> None:
    for tree in trees():
        condition = compile_filter(tree)
        assert rated_rows(condition)[0] == "FROM rollup_rated r"
        expected = await rated_split(store, compile_filter(conjoin(tree, ON_REQUESTS)), unit, by, 2)
        assert ordered(await rated_split(store, condition, unit, by, 2)) == ordered(expected), tree


async def test_rated_over_time_and_rated_counts_agree(store: Store) -> None:
    assert rated_rows(compile_filter(ON_REQUESTS))[0] != "FROM rollup_rated r"
    for tree in trees():
        condition = compile_filter(tree)
        joined = compile_filter(conjoin(tree, ON_REQUESTS))
        for dimensions in (["day", "user"], ["day", "property:prompt_version"], ["model"]):
            found = await rated_over_time(store, condition, dimensions)
            expected = await rated_over_time(store, joined, dimensions)
            assert sorted(map(str, found)) == sorted(map(str, expected)), (tree, dimensions)
        assert await rated_counts(store, condition) == await rated_counts(store, joined), tree


async def test_an_upgraded_store_gets_the_rated_rows_of_its_feedback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests rated before migration 012 get their rated rows when it runs."""
    path = str(tmp_path / "old.db")
    before = [name for name, _ in MIGRATIONS].index("012_rated_rows")
    statements: list[tuple[str, list[Any]]] = []
    for i in range(12):
        statements.append(
            (
                "INSERT INTO requests (id, created_at, method, path, model, outcome, user_id) "
                "VALUES (?, ?, 'POST', '/', ?, 'ok', ?)",
                [f"o{i}", f"2026-03-0{1 + i % 5}T10:00:00.000Z", "gpt-4o", USERS[i % 4]],
            )
        )
        statements.append(
            (
                "INSERT INTO request_properties (request_id, key, value, created_at) "
                "VALUES (?, 'app', 'chat', ?)",
                [f"o{i}", f"2026-03-0{1 + i % 5}T10:00:00.000Z"],
            )
        )
    # Every other request rated, and a rating for a request never written.
    for request_id, rating in [*((f"o{i}", i % 4 // 2) for i in range(0, 12, 2)), ("gone", 1)]:
        statements.append(
            (
                "INSERT INTO feedback (request_id, rating, created_at, updated_at) "
                "VALUES (?, ?, '2026-03-06', '2026-03-06')",
                [request_id, rating],
            )
        )
    with monkeypatch.context() as patch:
        patch.setattr(sql_store, "MIGRATIONS", MIGRATIONS[:before])
        old = open_store(path)
        await old.open()
        await old.transact(statements)
        await old.close()
    upgraded = open_store(path)
    assert await upgraded.open() == ["012_rated_rows"]
    await agree(upgraded)
    assert len(await rated(upgraded)) == 6
    await upgraded.close()


async def test_split_by_unit_says_which_splits_read_narrow_tables(store: Store) -> None:
    span = compile_filter({"request": {"created_at": {"gte": "2026-03-03"}}})
    assert await split_by_unit(store, span, "property:prompt_version")
    assert await split_by_unit(store, span, None)
    assert await split_by_unit(store, span, "user")
    on_requests = compile_filter(
        conjoin({"request": {"created_at": {"gte": "2026-03-03"}}}, ON_REQUESTS)
    )
    assert not await split_by_unit(store, on_requests, "property:prompt_version")
    assert not await split_by_unit(store, on_requests, "user")
