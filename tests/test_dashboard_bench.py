"""bench/dashboard_bench.py on a tiny generated store: every view answers through its route,
the table names each one, and the store it is given is only read (the bench runs on a copy)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench import dashboard_bench, gen_store
from bench.dashboard_bench import Timing, View

VIEWS = (
    "requests page: first page",
    "requests page: next page",
    "requests page: capped count",
    "requests page: first page (feedback up)",
    "requests page: capped count (feedback up)",
    "requests page: first page (accuracy > 90)",
    "requests page: capped count (accuracy > 90)",
    "request drawer",
    "analytics, 24 h",
    "analytics, 7 d",
    "analytics, 30 d",
    "analytics, all time",
    "analytics split by user, 30 d",
    "analytics split by prompt version, all time",
    "analytics comparing prompt v1 and v2, 7 d",
    "operations, 24 h",
    "operations, all time",
    "operations: property values, 7 d",
    "operations: property values, all time",
    "sessions list",
    "one session",
    "users",
    "datasets",
    "POST /v1/request/stats by day and model",
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("store") / "tiny.db"
    gen_store.fill(db, rows=300, days=90, seed=3, feedback=0.3, scores=0.3)
    return db


async def test_every_view_answers_on_a_copy_of_the_store(tiny_store: Path, tmp_path: Path) -> None:
    before = digest(tiny_store)
    rows, timings = await dashboard_bench.measure(tiny_store, tmp_path, runs=2, timeout_s=30)
    assert rows == 300
    names = [t.view.name for t in timings]
    assert set(VIEWS) <= set(names), set(VIEWS) - set(names)
    for timing in timings:
        assert timing.statuses == {200}, timing.view
        assert len(timing.wall_ms) == len(timing.cpu_ms) == 2
    # The given store is untouched; the copy took the dataset.
    assert digest(tiny_store) == before
    assert sorted(p.name for p in tiny_store.parent.iterdir()) == ["tiny.db"]
    table = dashboard_bench.table(timings)
    assert table.count("\n") == len(timings) + 1
    assert "| request drawer | `GET /requests/{id}/drawer` |" in table
    assert "| analytics, 7 d | `GET /analytics?since=7d` |" in table
    assert "| requests page: next page | `GET /requests/rows` |" in table  # no cursor shown


async def test_only_picks_views_by_name(tiny_store: Path, tmp_path: Path) -> None:
    _, timings = await dashboard_bench.measure(tiny_store, tmp_path, 1, 30, only=["users"])
    assert [t.view.name for t in timings] == ["users"]


def test_verdicts_name_misses_and_failed_answers() -> None:
    slow = Timing(View("slow", "/analytics"), [400.0, 500.0, 200.0], [1.0] * 3, {200})
    quick = Timing(View("quick", "/users"), [10.0], [5.0], {200})
    failed = Timing(View("failed", "/operations?since=30d"), [5.0], [1.0], {200, 503})
    assert not slow.met and quick.met and not failed.met
    table = dashboard_bench.table([slow, quick, failed])
    assert "| slow | `GET /analytics` | 400 | 500 | 1 | <= 300 | missed |" in table
    assert "| quick | `GET /users` | 10 | 10 | 5 | <= 300 | met |" in table
    assert "| answered 200, 503 |" in table
