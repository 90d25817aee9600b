"""storage.query.counts: the requests list's count, exact under the cap and "N+" over it, with
the feedback, score and dataset tests a filter requires also given as semijoins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage import Store, open_store
from storage.errors import FilterError, QueryError
from storage.query.counts import CappedCount, capped_count, semijoins
from storage.query.datasets import create_dataset
from storage.query.filters import compile_filter, conjoin
from storage.query.pages import MIN_SEMIJOINS, PageQuery, query_page
from storage.query.stats import count_requests
from tests.logbook import IDS, fill

RATED_UP = {"feedback": {"rating": {"equals": True}}}
UNRATED = {"feedback": {"rating": {"equals": "null"}}}
NOT_UP = {"feedback": {"rating": {"not-equals": True}}}
ACCURATE = {"scores": {"accuracy": {"gt": 70}}}
CHAT_APP = {"properties": {"app": {"equals": "chat"}}}
IN_DATASET = {"dataset": {"name": {"equals": "picked"}}}
MINI = {"request": {"model": {"equals": "gpt-4o-mini"}}}
DAY_ONE = {"request": {"created_at": {"gte": "2024-05-01", "lt": "2024-05-02"}}}


def since(delta: timedelta) -> Any:
    return {"request": {"created_at": {"gte": (datetime.now(UTC) - delta).isoformat()}}}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    await fill(opened)
    await create_dataset(opened, "picked", ids=["r1", "r3", "r6"])
    yield opened
    await opened.close()


async def test_under_the_cap_the_count_is_exact(store: Store) -> None:
    found = await capped_count(store, "all", 100)
    assert found == CappedCount(len(IDS), capped=False)
    assert found.text == "6"
    # A cap the rows just reach is not passed.
    assert await capped_count(store, "all", len(IDS)) == CappedCount(6, False)


async def test_over_the_cap_the_count_stops_at_it(store: Store) -> None:
    found = await capped_count(store, "all", 4)
    assert found == CappedCount(4, capped=True)
    assert found.text == "4+"
    assert (await capped_count(store, "all", 5)).text == "5+"
    assert (await capped_count(store, "all", 1)).text == "1+"


@pytest.mark.parametrize(
    ("tree", "exact"),
    [
        (RATED_UP, 2),  # r1, r5
        (UNRATED, 3),  # r3, r4, r6
        (NOT_UP, 4),
        (ACCURATE, 2),  # r1 (95), r2 (80)
        (CHAT_APP, 3),  # r1, r3, r6
        (IN_DATASET, 3),
        (conjoin(RATED_UP, ACCURATE), 1),
        (conjoin(IN_DATASET, MINI), 2),  # r1, r3
        (conjoin(IN_DATASET, UNRATED), 2),  # r3, r6
        (conjoin(RATED_UP, {"request": {"created_at": {"gte": "2024-05-01T11:00"}}}), 1),
        (conjoin(ACCURATE, DAY_ONE), 2),
        ({"left": RATED_UP, "operator": "or", "right": IN_DATASET}, 4),
        ({"request_response_rmt": {"helicone-score-feedback": {"equals": False}}}, 1),
        ({"request": {"model": {"equals": "nothing-logged"}}}, 0),
    ],
)
async def test_filters_are_counted_like_the_exact_count(
    store: Store, tree: Any, exact: int
) -> None:
    assert await count_requests(store, compile_filter(tree)) == exact
    assert await capped_count(store, tree, 10) == CappedCount(exact, capped=False)
    if exact > 1:
        assert await capped_count(store, tree, exact - 1) == CappedCount(exact - 1, True)


def test_only_required_positive_tests_of_small_sets_become_semijoins() -> None:
    [rated] = semijoins(RATED_UP)
    assert rated.sql == "r.id IN (SELECT f.request_id FROM feedback f WHERE f.rating = ?)"
    assert rated.params == [1]
    [scored] = semijoins(ACCURATE)
    assert scored.sql.startswith("r.id IN (SELECT s.request_id FROM scores s WHERE s.name = ?")
    assert scored.params == ["accuracy", 70.0]
    assert len(semijoins(conjoin(RATED_UP, ACCURATE, IN_DATASET, MINI))) == 3
    # Not required (an OR), negative, "has none", or a set most requests are in: no semijoin.
    assert semijoins({"left": RATED_UP, "operator": "or", "right": ACCURATE}) == []
    assert semijoins(UNRATED) == semijoins(NOT_UP) == []
    assert semijoins(CHAT_APP) == semijoins(MINI) == semijoins("all") == []
    assert semijoins({"session_feedback": {"rating": {"equals": True}}}) == []


def test_a_week_or_less_reads_the_range_instead() -> None:
    assert semijoins(conjoin(RATED_UP, since(timedelta(hours=1)))) == []
    assert semijoins(conjoin(since(timedelta(days=6)), ACCURATE)) == []
    assert semijoins(conjoin(RATED_UP, DAY_ONE)) == []
    assert len(semijoins(conjoin(RATED_UP, since(timedelta(days=30))))) == 1
    long_ago = {"request": {"created_at": {"gte": "2024-01-01", "lt": "2024-03-01"}}}
    assert len(semijoins(conjoin(long_ago, ACCURATE))) == 1


def test_a_test_for_no_time_is_no_bound() -> None:
    # "null" is the filter's "has no value": `r.created_at IS NULL` takes no parameter.
    for table, column in (("request", "created_at"), ("request_response_rmt", "created_at")):
        no_time = {table: {column: {"equals": "null"}}}
        assert len(semijoins(conjoin(RATED_UP, no_time))) == 1


async def test_a_bad_cap_or_filter_is_refused(store: Store) -> None:
    with pytest.raises(QueryError, match="at least 1"):
        await capped_count(store, "all", 0)
    with pytest.raises(FilterError):
        await capped_count(store, {"scores": {"accuracy": {"gt": "lots"}}}, 10)


@pytest.mark.parametrize(
    ("tree", "newest_first"),
    [
        (conjoin(RATED_UP, ACCURATE), ["r1"]),
        (conjoin(IN_DATASET, RATED_UP), ["r1"]),
        (conjoin(IN_DATASET, {"scores": {"helpful": {"gte": 0}}}), ["r6", "r1"]),
        (conjoin(IN_DATASET, {"scores": {"helpful": {"gte": 0}}}, MINI), ["r1"]),
        (conjoin(IN_DATASET, ACCURATE, {"scores": {"accuracy": {"lt": 90}}}), []),
    ],
)
async def test_pages_with_two_required_sets_hold_the_same_rows(
    store: Store, tree: Any, newest_first: list[str]
) -> None:
    assert len(semijoins(tree)) >= MIN_SEMIJOINS
    seen: list[str] = []
    cursor = None
    while True:
        page = await query_page(store, PageQuery(tree, limit=1, cursor=cursor))
        seen += [row["request_id"] for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == newest_first
    assert await count_requests(store, compile_filter(tree)) == len(newest_first)
