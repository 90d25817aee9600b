"""Rollups the writer keeps: always equal to the same aggregates rebuilt from the rows, and
stats read from them equal to stats read from the rows."""

from __future__ import annotations

import itertools
import random
from decimal import Decimal
from typing import Any

import pytest

from storage import Row, Store, open_store
from storage.migrations import LATENCY_BUCKET_SQL, m007_rollups, m009_score_values
from storage.query import rollups as query_rollups
from storage.query.analytics import rated_split, score_distributions, top_values
from storage.query.compare import rated_counts
from storage.query.datasets import create_dataset
from storage.query.filters import compile_filter
from storage.query.stats import request_stats
from storage.retention import prune
from storage.rollups import bucket
from storage.sql import SqlStore

TABLES = {
    "rollup_hours": "hour, model_key, outcome",
    "rollup_hour_histogram": "period, model_key, outcome, metric, bucket",
    "rollup_day_histogram": "period, model_key, outcome, metric, bucket",
    "rollup_scores": "hour, model_key, outcome, name",
    "rollup_users": "user_id",
    "rollup_sessions": "session_id",
    "rollup_hour_score_values": "period, model_key, outcome, name, value",
    "rollup_day_score_values": "period, model_key, outcome, name, value",
}
# A key that no longer holds anything (its row was replaced) is kept with zero counts.
LIVE = {
    "rollup_hours": "requests > 0",
    "rollup_hour_histogram": "count > 0",
    "rollup_day_histogram": "count > 0",
    "rollup_scores": "count > 0",
    "rollup_users": "requests > 0",
    "rollup_sessions": "requests > 0",
    "rollup_hour_score_values": "count > 0",
    "rollup_day_score_values": "count > 0",
}
MODELS = ("gpt-4o", "gpt-4o-mini", "", None)
OUTCOMES = ("ok", "ok", "ok", "upstream_error", "timeout")


def _plain(value: Any) -> Any:
    """Comparable values: sums of nothing read as 0, numbers rounded past float noise."""
    if value is None:
        return 0
    if isinstance(value, float | Decimal):
        return round(float(value), 6)
    return value


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table, key in TABLES.items():
        rows = await store.fetch(f"SELECT * FROM {table} WHERE {LIVE[table]} ORDER BY {key}")
        out[table] = [tuple(_plain(v) for v in row.values()) for row in rows]
    return out


async def rebuilt(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """The rollups as migrations 007 and 009 compute them from the rows, in place of the kept
    ones."""
    assert isinstance(store, SqlStore)
    statements = [*m007_rollups(store.dialect), *m009_score_values(store.dialect)]
    fill = [s for s in statements if s.startswith("INSERT")]
    await store.transact([(f"DELETE FROM {t}", []) for t in TABLES] + [(s, []) for s in fill])
    return await snapshot(store)


def random_row(rng: random.Random, request_id: str) -> Row:
    hour = rng.randrange(5)
    model = rng.choice(MODELS)
    return Row(
        id=request_id,
        created_at=f"2026-03-0{1 + hour // 3}T{10 + hour:02d}:{rng.randrange(60):02d}:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model=model,
        request_model=model,
        outcome=rng.choice(OUTCOMES),
        latency_ms=None if rng.random() < 0.1 else round(rng.lognormvariate(5, 1), 3),
        ttft_ms=None if rng.random() < 0.5 else round(rng.uniform(1, 200), 3),
        prompt_tokens=None if rng.random() < 0.2 else rng.randrange(1000),
        completion_tokens=rng.randrange(500),
        total_tokens=rng.randrange(1500),
        cost_usd=None if rng.random() < 0.2 else rng.randrange(1000) / 1024,
        cache_hit=rng.random() < 0.1,
        user_id=rng.choice(("alice", "bob", "carol", None)),
        session_id=rng.choice(("s1", "s2", "s3", None)),
        session_name=rng.choice(("Checkout", "Search", None)),
    )


async def test_rollups_follow_writes_replacements_feedback_and_scores(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    rng = random.Random(12)
    # Feedback and a score that arrive before their exchange is written.
    await store.upsert_feedback("q0", True)
    await store.upsert_scores("q0", {"accuracy": 70})
    ids = [f"q{i}" for i in range(60)]
    batch = [random_row(rng, i) for i in ids[:40]]
    # One id twice in a batch: the last row is the one stored.
    batch.append(random_row(rng, "q3"))
    await store.write_batch(batch)
    await store.write_batch([random_row(rng, i) for i in ids[40:]])
    for request_id in rng.sample(ids, 25):
        await store.upsert_feedback(request_id, rng.random() < 0.6, "note")
    for request_id in rng.sample(ids, 25):
        await store.upsert_scores(
            request_id, {"accuracy": rng.randrange(100), "helpful": rng.random() < 0.5}
        )
    assert await snapshot(store) == await rebuilt(store)
    # Replaced under their ids (new hour, model, outcome, user, session), ratings flipped,
    # scores moved, the smallest and largest accuracies changed.
    await store.write_batch([random_row(rng, i) for i in rng.sample(ids, 20)])
    for request_id in rng.sample(ids, 15):
        await store.upsert_feedback(request_id, rng.random() < 0.5)
    accuracies = await store.fetch("SELECT request_id, value FROM scores WHERE name = 'accuracy'")
    ordered = sorted(accuracies, key=lambda r: r["value"])
    for row in (ordered[0], ordered[-1], *rng.sample(accuracies, 5)):
        await store.upsert_scores(row["request_id"], {"accuracy": rng.randrange(40, 60)})
    assert await snapshot(store) == await rebuilt(store)
    await store.close()


async def test_prune_leaves_the_rollups_as_they_were(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    rng = random.Random(5)
    ids = [f"p{i}" for i in range(30)]
    await store.write_batch([random_row(rng, i) for i in ids])
    for request_id in ids[::3]:
        await store.upsert_feedback(request_id, True)
        await store.upsert_scores(request_id, {"accuracy": 50})
    before = await snapshot(store)
    report = await prune(store, "2026-03-02T00:00:00.000Z", pause_s=0)
    assert report.requests > 0
    assert await snapshot(store) == before
    await store.close()


async def test_python_buckets_match_the_sql_buckets(tmp_path: Any) -> None:
    store = open_store(str(tmp_path / "b.db"))
    await store.open()
    rng = random.Random(1)
    values = [
        0.0,
        0.5,
        1.0,
        1.1,
        1.0999,
        1.1001,
        2.0,
        1e9,
        *(rng.lognormvariate(5, 3) for _ in range(300)),
    ]
    for value in values:
        sql = LATENCY_BUCKET_SQL.replace("latency_ms", "?")
        rows = await store.fetch(f"SELECT {sql} AS b", [value] * sql.count("?"))
        assert rows[0]["b"] == bucket(value), value
    await store.close()


@pytest.mark.parametrize("model", ["", None, "gpt-4o"])
async def test_an_empty_model_and_no_model_are_apart(tmp_path: Any, model: str | None) -> None:
    store = open_store(str(tmp_path / "m.db"))
    await store.open()
    row = Row("m1", "2026-03-01T10:00:00.000Z", "POST", "/v1/x", model=model)
    await store.write_batch([row, Row("m2", row.created_at, "POST", "/v1/x", model="other")])
    rows = await store.fetch("SELECT model, requests FROM rollup_hours ORDER BY model_key")
    assert {(r["model"], r["requests"]) for r in rows} == {(model, 1), ("other", 1)}
    await store.close()


# The read side: request_stats answered from the rollups equals request_stats from the rows.
DIMENSION_SETS = [
    list(combo)
    for n in range(4)
    for combo in itertools.combinations(("day", "model", "outcome"), n)
]
ROLLUP_FILTERS: list[Any] = [
    "all",
    {"request": {"created_at": {"gte": "2026-03-02T05:30:00Z", "lt": "2026-03-04T17:45:00Z"}}},
    {"request": {"created_at": {"gt": "2026-03-03T00:00:00Z"}}},
    {"request": {"created_at": {"gte": "2026-03-02T01:10:00Z", "lte": "2026-03-02T09:20:00Z"}}},
    {"request": {"model": {"equals": "gpt-4o"}}},
    {"request": {"model": {"not-equals": "gpt-4o"}, "outcome": {"equals": "ok"}}},
    {"request": {"model": {"equals": "null"}}},
    {"request": {"model": {"contains": "MINI"}}},
    {
        "left": {"request": {"model": {"equals": "gpt-4o"}}},
        "operator": "or",
        "right": {"request": {"outcome": {"not-equals": "ok"}}},
    },
    {
        "left": {"request": {"created_at": {"gte": "2026-03-01T12:00:00Z"}}},
        "operator": "and",
        "right": {
            "left": {"request": {"outcome": {"equals": "ok"}}},
            "operator": "and",
            "right": {"request": {"created_at": {"lt": "2026-03-05T00:00:00Z"}}},
        },
    },
]
# Filters the rollups cannot answer: these go to the rows alone.
ROW_FILTERS: list[Any] = [
    {"request": {"user_id": {"equals": "alice"}}},
    {"request": {"created_at": {"equals": "2026-03-02T05:30:00.000Z"}}},
    {
        "left": {"request": {"created_at": {"gte": "2026-03-02T00:00:00Z"}}},
        "operator": "or",
        "right": {"request": {"model": {"equals": "gpt-4o"}}},
    },
    {"feedback": {"rating": {"equals": True}}},
    {"properties": {"app": {"equals": "chat"}}},
    {"response": {"status": {"gte": 0}}, "request": {"outcome": {"equals": "ok"}}},
]


def spread_row(rng: random.Random, request_id: str) -> Row:
    """A row anywhere in five days; latencies and costs are exact in binary, so every sum
    is the same whatever order it is added in."""
    model = rng.choice(("gpt-4o", "gpt-4o-mini", "o4-mini", None))
    day, hour, minute = rng.randrange(1, 6), rng.randrange(24), rng.randrange(60)
    return Row(
        id=request_id,
        created_at=f"2026-03-0{day}T{hour:02d}:{minute:02d}:{rng.randrange(60):02d}.000Z",
        method="POST",
        path="/v1/chat/completions",
        model=model,
        request_model=model,
        outcome=rng.choice(OUTCOMES),
        latency_ms=None if rng.random() < 0.1 else rng.randrange(4, 40000) / 4,
        prompt_tokens=None if rng.random() < 0.2 else rng.randrange(1000),
        completion_tokens=rng.randrange(500),
        total_tokens=rng.randrange(1500),
        cost_usd=None if rng.random() < 0.2 else rng.randrange(1000) / 1024,
        user_id=rng.choice(("alice", "bob", None)),
        session_id=rng.choice(("s1", "s2", "s3", None)),
    )


async def _both_ways(
    store: Store, tree: Any, dimensions: list[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(stats as answered, stats from the rows alone, whether the rollups answered)."""
    condition = compile_filter(tree)
    answered = await query_rollups.plan(store, condition, dimensions) is not None
    stats = await request_stats(store, condition, dimensions)
    with monkeypatch.context() as patched:
        patched.setattr(query_rollups, "plan", _no_plan)
        from_rows = await request_stats(store, condition, dimensions)
    return stats, from_rows, answered


async def _no_plan(*args: Any) -> None:
    return None


def _ordered(groups: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(group) for group in groups)


async def _analytics(store: Store, tree: Any) -> list[Any]:
    """The analytics answers the rollups give for `tree`: splits, rated counts, top models."""
    condition = compile_filter(tree)
    found: list[Any] = [await rated_counts(store, condition)]
    for unit, by, top in itertools.product(("hour", "day"), (None, "model"), (1, 6)):
        found.append(_ordered(await rated_split(store, condition, unit, by, top)))
    for limit in (1, 2, 10):
        found.append(await top_values(store, condition, "model", limit))
        found.append(await score_distributions(store, condition, limit))
    return found


async def _check_analytics(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analytics queries answer the same from the rollups and from the rows alone."""
    for tree in [*ROLLUP_FILTERS, *ROW_FILTERS]:
        found = await _analytics(store, tree)
        with monkeypatch.context() as patched:
            patched.setattr(query_rollups, "plan", _no_plan)
            assert found == await _analytics(store, tree), tree


async def _check_every_way(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await _check_analytics(store, monkeypatch)
    for tree in ROLLUP_FILTERS:
        for dimensions in DIMENSION_SETS:
            stats, from_rows, answered = await _both_ways(store, tree, dimensions, monkeypatch)
            assert answered, (tree, dimensions)
            assert stats == from_rows, (tree, dimensions)
    for tree in ROW_FILTERS:
        stats, from_rows, answered = await _both_ways(store, tree, ["day"], monkeypatch)
        assert not answered, tree
        assert stats == from_rows
    for dimensions in (["user"], ["day", "path"], ["property:app"]):
        stats, from_rows, answered = await _both_ways(store, "all", dimensions, monkeypatch)
        assert not answered and stats == from_rows


async def test_stats_from_rollups_equal_stats_from_rows(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(store_url)
    await store.open()
    rng = random.Random(21)
    ids = [f"r{i}" for i in range(400)]
    await store.write_batch([spread_row(rng, i) for i in ids])
    for request_id in rng.sample(ids, 120):
        await store.upsert_feedback(request_id, rng.random() < 0.6)
    for request_id in rng.sample(ids, 100):
        await store.upsert_scores(
            request_id, {"accuracy": rng.randrange(100), "helpful": rng.random() < 0.5}
        )
    # A fractional score (binned in tenths of its range), exact in binary.
    for request_id in rng.sample(ids, 50):
        await store.upsert_scores(request_id, {"quality": rng.randrange(-40, 40) / 8})
    for session_id in ("s1", "s3"):
        await store.upsert_session_feedback(session_id, session_id == "s1")
    await _check_every_way(store, monkeypatch)
    # Rows replaced under their ids (another hour, day, model, outcome), ratings flipped and
    # taken back, scores changed (the smallest and largest among them).
    await store.write_batch([spread_row(rng, i) for i in rng.sample(ids, 80)])
    for request_id in rng.sample(ids, 60):
        await store.upsert_feedback(request_id, rng.random() < 0.5)
    accuracies = await store.fetch("SELECT request_id, value FROM scores WHERE name = 'accuracy'")
    ordered = sorted(accuracies, key=lambda r: r["value"])
    for row in (ordered[0], ordered[-1], *rng.sample(accuracies, 20)):
        await store.upsert_scores(row["request_id"], {"accuracy": rng.randrange(30, 70)})
    for request_id in rng.sample(ids, 20):
        await store.upsert_scores(request_id, {"quality": rng.randrange(-40, 40) / 8})
    await _check_every_way(store, monkeypatch)
    # Retention deletes the oldest rows (not those in a dataset) and leaves the rollups: the
    # hours it thinned out are read from the rows.
    oldest = await store.fetch("SELECT id FROM requests ORDER BY created_at LIMIT 3")
    await create_dataset(store, "kept", ids=[r["id"] for r in oldest])
    report = await prune(store, "2026-03-02T07:30:00.000Z", pause_s=0)
    assert report.requests > 0
    await _check_every_way(store, monkeypatch)
    await store.close()


async def test_stats_from_rollups_on_an_empty_store(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(str(tmp_path / "empty.db"))
    await store.open()
    stats, from_rows, answered = await _both_ways(store, "all", ["day"], monkeypatch)
    assert not answered and stats == from_rows and stats["requests"] == 0
    await store.close()


async def test_stats_add_up_the_outcomes_of_a_day_and_model_in_one_bucket(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole days grouped by day and model read the daily histogram's rows as stored: rows of
    one day, model and latency bucket with different outcomes are added up into one bucket."""
    store = open_store(store_url)
    await store.open()
    try:
        rows = [
            ("a", "2026-03-01T00:10:00.000Z", "gpt-4o", "ok", 100.0),
            ("b", "2026-03-03T05:00:00.000Z", "gpt-4o", "ok", 100.0),
            ("c", "2026-03-03T08:00:00.000Z", "gpt-4o", "upstream_error", 101.0),
            ("d", "2026-03-03T09:00:00.000Z", "gpt-4o", "timeout", 102.5),
            ("e", "2026-03-03T10:00:00.000Z", "gpt-4o-mini", "ok", 100.0),
            ("f", "2026-03-05T00:00:00.000Z", "gpt-4o", "ok", 40.0),
        ]
        await store.write_batch(
            [
                Row(
                    id=request_id,
                    created_at=created_at,
                    method="POST",
                    path="/v1/chat/completions",
                    model=model,
                    outcome=outcome,
                    latency_ms=latency,
                )
                for request_id, created_at, model, outcome, latency in rows
            ]
        )
        assert bucket(100.0) == bucket(101.0) == bucket(102.5)
        for dimensions in (["day", "model"], ["day", "model", "outcome"]):
            stats, from_rows, answered = await _both_ways(store, "all", dimensions, monkeypatch)
            assert answered and stats == from_rows, dimensions
        stats, _, _ = await _both_ways(store, "all", ["day", "model"], monkeypatch)
        group = next(
            g for g in stats["groups"] if g["key"] == {"day": "2026-03-03", "model": "gpt-4o"}
        )
        assert (group["requests"], group["errors"]) == (3, 2)
        # Three latencies in one bucket: the middle one is estimated within the bucket's width.
        assert 97 < group["latency_ms"]["p50"] < 107
        assert group["latency_ms"]["avg"] == round((100.0 + 101.0 + 102.5) / 3, 3)
    finally:
        await store.close()
