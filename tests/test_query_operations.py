"""storage.query.operations: per hour or day figures from the rollups (with the partial hours
from the rows) agree with the rows themselves and with request_stats, in both stores."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from storage import Row, Store, open_store
from storage.errors import QueryError
from storage.models import OUTCOMES
from storage.query.analytics import top_values
from storage.query.filters import compile_filter, conjoin
from storage.query.operations import (
    Piece,
    Scope,
    Unit,
    operations,
    pieces,
    top_property_values,
    top_users,
)
from storage.query.stats import request_stats

START = datetime(2024, 5, 1, 21, 0, 0)
MODELS = ("gpt-4o-mini", "gpt-4o", None)


def traffic() -> list[Row]:
    """90 rows 37 minutes apart from 2024-05-01 21:00 (into 2024-05-03), mixed models,
    outcomes, latencies, TTFTs, tokens and costs."""
    rng = random.Random(7)
    rows = []
    for n in range(90):
        at = START + timedelta(minutes=37 * n, seconds=n % 7, milliseconds=n)
        ok = rng.random() < 0.8
        rows.append(
            Row(
                id=f"o{n:03}",
                created_at=at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                method="POST",
                path="/v1/chat/completions",
                model=MODELS[n % 3],
                outcome="ok" if ok else rng.choice(OUTCOMES[1:4]),
                latency_ms=None if n % 11 == 0 else round(rng.uniform(5, 3000), 2),
                ttft_ms=None if n % 4 == 0 else round(rng.uniform(1, 400), 2),
                prompt_tokens=None if n % 9 == 0 else rng.randint(1, 500),
                completion_tokens=rng.randint(0, 300),
                cost_usd=None if n % 5 == 0 else rng.uniform(0, 0.01),
                properties={} if n % 6 == 0 else {"app": ("chat", "search", "mail")[n % 4 % 3]},
                user_id=None if n % 7 == 0 else f"user-{n % 4}",
            )
        )
    return rows


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    await opened.write_batch(traffic())
    await opened.upsert_feedback("o001", True)
    yield opened
    await opened.close()


def tree_of(scope: Scope) -> Any:
    nodes: list[Any] = []
    if scope.since:
        nodes.append({"request": {"created_at": {"gte": scope.since}}})
    if scope.until:
        nodes.append({"request": {"created_at": {"lt": scope.until}}})
    for name, values in (("model", scope.models), ("outcome", scope.outcomes)):
        branch: Any = "all"
        for value in values:
            leaf = {"request": {name: {"equals": value}}}
            branch = leaf if branch == "all" else {"left": branch, "operator": "or", "right": leaf}
        nodes.append(branch)
    return conjoin(*nodes)


SCOPES = [
    Scope(),
    Scope(since="2024-05-01T23:17:05.123Z"),
    Scope(since="2024-05-02T00:00:00.000Z", until="2024-05-03T00:00:00.000Z"),
    Scope(since="2024-05-01T22:30:00.000Z", until="2024-05-02T01:10:00.000Z"),
    Scope(since="2024-05-02T05:10:00.000Z", until="2024-05-02T05:50:00.000Z"),
    Scope(until="2024-05-02T13:45:00.000Z", models=("gpt-4o", "gpt-4o-mini")),
    Scope(since="2024-05-01T21:59:00.000Z", outcomes=("ok",)),
    Scope(outcomes=("timeout", "upstream_error"), models=("gpt-4o",)),
]


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("unit", ["hour", "day"])
async def test_rollups_give_the_rows_figures(store: Store, scope: Scope, unit: Unit) -> None:
    condition = compile_filter(tree_of(scope))
    from_rollups = await operations(store, condition, unit, scope)
    from_rows = await operations(store, condition, unit)
    assert from_rollups == from_rows
    stats = await request_stats(store, condition, ["model"])
    totals = from_rollups["totals"]
    assert totals["requests"] == stats["requests"] and totals["errors"] == stats["errors"]
    for p in ("p50", "p90", "p99"):
        assert totals["latency_ms"][p] == stats["latency_ms"][p]
    assert totals["latency_ms"]["avg"] == stats["latency_ms"]["avg"]
    assert totals["tokens"]["prompt"] == stats["tokens"]["prompt"]
    assert totals["cost_usd"] == pytest.approx(stats["cost_usd"], abs=1e-9)
    by_model = {g["key"]["model"]: g["requests"] for g in stats["groups"]}
    assert from_rollups["models"] == [
        {"value": m, "requests": n}
        for m, n in sorted(by_model.items(), key=lambda mn: (-mn[1], str(mn[0])))
        if m is not None
    ]
    assert sum(p["requests"] for p in from_rollups["periods"]) == stats["requests"]


async def test_days_match_request_stats_by_day(store: Store) -> None:
    condition = compile_filter("all")
    days = await operations(store, condition, "day", Scope())
    stats = await request_stats(store, condition, ["day"])
    assert [(p["period"], p["requests"], p["latency_ms"]["p90"]) for p in days["periods"]] == [
        (g["key"]["day"], g["requests"], g["latency_ms"]["p90"]) for g in stats["groups"]
    ]
    hours = await operations(store, condition, "hour", Scope())
    assert hours["periods"][0]["period"] == "2024-05-01T21"
    assert len(hours["periods"]) == len({row.created_at[:13] for row in traffic()})
    first = hours["periods"][0]
    assert sum(first["outcomes"].values()) == first["requests"]


async def test_a_replaced_row_leaves_no_trace(store: Store) -> None:
    again = traffic()[5]
    again.model, again.outcome, again.latency_ms = "gpt-4o", "timeout", 12.5
    await store.write_batch([again])
    condition = compile_filter("all")
    assert await operations(store, condition, "day", Scope()) == await operations(
        store, condition, "day"
    )


def test_pieces_cut_at_hours_and_days() -> None:
    scope = Scope(since="2024-05-01T22:30:00.000Z", until="2024-05-04T01:10:00.000Z")
    assert pieces(scope, "day") == [
        Piece("rows", "2024-05-01T22:30:00.000Z", "2024-05-01T23:00:00.000Z"),
        Piece("hour", "2024-05-01T23", "2024-05-02T00"),
        Piece("day", "2024-05-02", "2024-05-04"),
        Piece("hour", "2024-05-04T00", "2024-05-04T01"),
        Piece("rows", "2024-05-04T01:00:00.000Z", "2024-05-04T01:10:00.000Z"),
    ]
    assert pieces(scope, "hour")[1] == Piece("hour", "2024-05-01T23", "2024-05-04T01")
    assert pieces(Scope(), "day") == [Piece("day", None, None)]
    inside = Scope(since="2024-05-01T22:30:00.000Z", until="2024-05-01T22:40:00.000Z")
    assert pieces(inside, "hour") == [Piece("rows", inside.since, inside.until)]


async def test_a_bad_unit_is_refused(store: Store) -> None:
    with pytest.raises(QueryError, match="unit must be"):
        await operations(store, compile_filter("all"), "week")  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", SCOPES[:4])
async def test_top_property_values_agree_with_top_values(store: Store, scope: Scope) -> None:
    condition = compile_filter(tree_of(scope))
    found = await top_property_values(store, condition, "app", 2)
    assert found == await top_values(store, condition, "property:app", 2)
    assert found and all(row["requests"] > 0 for row in found)
    assert await top_property_values(store, condition, "nope") == []
    with pytest.raises(QueryError, match="limit must be"):
        await top_property_values(store, condition, "app", 0)


async def test_top_users_from_the_rollup_or_the_rows(store: Store) -> None:
    everything = await top_users(store, compile_filter("all"), 3)
    every_row = compile_filter({"request": {"created_at": {"gte": "2000-01-01"}}})
    assert everything == await top_users(store, every_row, 3)
    assert [row["value"] for row in everything] == ["user-1", "user-0", "user-2"]
    late = compile_filter({"request": {"created_at": {"gte": "2024-05-03T00:00:00Z"}}})
    found = await top_users(store, late)
    assert sum(row["requests"] for row in found) == sum(
        1 for row in traffic() if row.user_id and row.created_at >= "2024-05-03"
    )
