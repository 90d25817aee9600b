"""Property rows carry their request's created_at (migration 011) through every write, and the
reads that use it (top property values, a comparison's rated counts) agree with the rows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import storage.sql as sql_store
from storage import Row, Store, open_store
from storage.migrations import MIGRATIONS
from storage.query.analytics import property_values, top_values
from storage.query.compare import rated_counts
from storage.query.filters import ALL, Condition, compile_filter, conjoin, conjuncts, parts
from storage.query.operations import top_property_values
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


def test_parts_takes_time_bounds_and_property_values_apart() -> None:
    tree = conjoin(
        {"request": {"created_at": {"gte": "2026-03-01", "lt": "2026-03-05"}}},
        {"properties": {"Prompt_Version": {"equals": "v1"}}},
        {"request": {"model": {"not-equals": "gpt-4o"}}},
    )
    found = parts(compile_filter(tree))
    assert found.times == [(">=", "2026-03-01T00:00:00.000Z"), ("<", "2026-03-05T00:00:00.000Z")]
    assert found.properties == [("prompt_version", "v1")]
    assert found.rest.sql == "r.model IS NULL OR NOT (r.model = ?)"
    assert found.rest.params == ["gpt-4o"]
    assert parts(ALL).rest.sql == ALL.sql
    # An OR is one part, left as it is; so is a condition holding a string literal.
    either = compile_filter(
        {
            "left": {"request": {"created_at": {"gte": "2026-03-01"}}},
            "operator": "or",
            "right": {"properties": {"app": {"equals": "chat"}}},
        }
    )
    assert parts(either).times == [] and parts(either).rest.sql == either.sql
    literal = Condition("(r.model = 'a AND b') AND (r.created_at >= ?)", ["2026"])
    assert conjuncts(literal) == [literal]


def conditions() -> list[Any]:
    """Time ranges, property values and other tests, alone and together."""
    spans = [
        {"request": {"created_at": {"gte": "2026-03-04"}}},
        {"request": {"created_at": {"gt": "2026-03-04T05:00", "lte": "2026-03-07T10:00"}}},
        {"request": {"created_at": {"lt": "2026-03-06"}}},
    ]
    values = [{"properties": {"prompt_version": {"equals": v}}} for v in ("v1", "v2")]
    values.append({"properties": {"app": {"equals": "chat"}}})
    other = {"request": {"model": {"equals": "gpt-4o"}}}
    trees: list[Any] = ["all", *spans, *values, other]
    trees += [conjoin(s, v) for s in spans for v in values]
    trees += [conjoin(spans[0], values[0], values[2]), conjoin(spans[1], other)]
    trees.append(conjoin(values[1], other))
    return trees


async def reference_values(store: Store, tree: Any, key: str) -> list[dict[str, Any]]:
    """Top values read by joining every matching request to its properties."""
    condition = compile_filter(tree)
    rows = await store.fetch(
        "SELECT p.value AS value, COUNT(*) AS requests FROM requests r "
        "JOIN request_properties p ON p.request_id = r.id AND p.key = ? "
        f"WHERE {condition.sql} GROUP BY p.value ORDER BY COUNT(*) DESC, p.value",
        [key, *condition.params],
    )
    return [{"value": r["value"], "requests": int(r["requests"])} for r in rows]


@pytest.mark.parametrize("key", ["prompt_version", "app"])
async def test_top_property_values_agree_with_the_joined_rows(store: Store, key: str) -> None:
    for tree in conditions():
        expected = await reference_values(store, tree, key)
        condition = compile_filter(tree)
        assert await property_values(store, condition, key, 100) == expected, tree
        assert await top_property_values(store, condition, key, 100) == expected, tree
        assert await top_values(store, condition, f"property:{key}", 2) == expected[:2], tree
    assert await property_values(store, ALL, "missing") == []


async def test_rated_counts_of_property_groups_agree_with_the_joined_rows(store: Store) -> None:
    checked = 0
    for tree in conditions():
        condition = compile_filter(tree)
        rows = await store.fetch(
            "SELECT COUNT(*) AS rated, SUM(f.rating) AS positive FROM requests r "
            f"JOIN feedback f ON f.request_id = r.id WHERE {condition.sql}",
            condition.params,
        )
        expected = (int(rows[0]["rated"]), int(rows[0]["positive"] or 0))
        checked += expected[0] > 0
        assert await rated_counts(store, condition) == expected, tree
    assert checked > 10
