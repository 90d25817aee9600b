"""storage.query.counts: the requests list's count, exact under the cap and "N+" over it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import Store, open_store
from storage.errors import QueryError
from storage.query.counts import CappedCount, capped_count
from storage.query.filters import compile_filter
from storage.query.stats import count_requests
from tests.logbook import IDS, fill

RATED_UP = {"feedback": {"rating": {"equals": True}}}
ACCURATE = {"scores": {"accuracy": {"gt": 70}}}
CHAT_APP = {"properties": {"app": {"equals": "chat"}}}


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    await fill(opened)
    yield opened
    await opened.close()


async def test_under_the_cap_the_count_is_exact(store: Store) -> None:
    found = await capped_count(store, compile_filter("all"), 100)
    assert found == CappedCount(len(IDS), capped=False)
    assert found.text == "6"
    # A cap the rows just reach is not passed.
    assert await capped_count(store, compile_filter("all"), len(IDS)) == CappedCount(6, False)


async def test_over_the_cap_the_count_stops_at_it(store: Store) -> None:
    found = await capped_count(store, compile_filter("all"), 4)
    assert found == CappedCount(4, capped=True)
    assert found.text == "4+"
    assert (await capped_count(store, compile_filter("all"), 5)).text == "5+"
    assert (await capped_count(store, compile_filter("all"), 1)).text == "1+"


@pytest.mark.parametrize(
    ("tree", "exact"),
    [
        (RATED_UP, 2),  # r1, r5
        (ACCURATE, 2),  # r1 (95), r2 (80)
        (CHAT_APP, 3),  # r1, r3, r6
        ({"left": RATED_UP, "operator": "and", "right": ACCURATE}, 1),
        ({"request": {"model": {"equals": "nothing-logged"}}}, 0),
    ],
)
async def test_filters_are_counted_like_the_exact_count(
    store: Store, tree: Any, exact: int
) -> None:
    condition = compile_filter(tree)
    assert await count_requests(store, condition) == exact
    assert await capped_count(store, condition, 10) == CappedCount(exact, capped=False)
    if exact > 1:
        assert await capped_count(store, condition, exact - 1) == CappedCount(exact - 1, True)


async def test_a_cap_below_one_is_refused(store: Store) -> None:
    with pytest.raises(QueryError, match="at least 1"):
        await capped_count(store, compile_filter("all"), 0)
