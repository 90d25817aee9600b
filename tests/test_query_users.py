"""storage.query.users: per-user totals from rollup_users or the filtered rows, keyset pages."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import Row, Store, open_store
from storage.errors import QueryError
from storage.query.filters import compile_filter
from storage.query.users import UserQuery, UserSort, user_page
from tests.logbook import fill

ALL = compile_filter("all")
# Matches every row, but is a filter: the rows are grouped instead of reading the rollup.
EVERY_ROW = compile_filter({"request": {"created_at": {"gte": "2000-01-01"}}})


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    await fill(opened)
    yield opened
    await opened.close()


async def all_pages(store: Store, sort: UserSort, limit: int, everything: bool) -> list[str]:
    condition = ALL if everything else EVERY_ROW
    seen: list[str] = []
    cursor = None
    while True:
        page = await user_page(store, condition, UserQuery(sort, limit, cursor))
        seen += [row["user_id"] for row in page.rows]
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def test_the_totals_of_each_user(store: Store) -> None:
    page = await user_page(store, ALL, UserQuery())
    assert page.next_cursor is None
    assert page.rows == [
        {"user_id": "alice", "requests": 2, "prompt_tokens": 10, "completion_tokens": 5,
         "total_tokens": 15, "cost_usd": 0.001, "first_at": "2024-05-01T10:00:00.000Z",
         "last_at": "2024-05-02T09:00:00.000Z", "rated": 1, "positive": 1, "positive_rate": 1.0},
        {"user_id": "bob", "requests": 2, "prompt_tokens": 140, "completion_tokens": 110,
         "total_tokens": 250, "cost_usd": 0.01, "first_at": "2024-05-01T12:00:00.000Z",
         "last_at": "2024-05-03T20:00:00.000Z", "rated": 1, "positive": 0, "positive_rate": 0.0},
        {"user_id": "carol", "requests": 1, "prompt_tokens": 8, "completion_tokens": 0,
         "total_tokens": 8, "cost_usd": 1.6e-07, "first_at": "2024-05-03T08:00:00.000Z",
         "last_at": "2024-05-03T08:00:00.000Z", "rated": 1, "positive": 1, "positive_rate": 1.0},
    ]  # fmt: skip
    grouped = await user_page(store, EVERY_ROW, UserQuery())
    assert grouped.rows == page.rows


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("requests", ["alice", "bob", "carol"]),
        ("cost", ["bob", "alice", "carol"]),
        ("last_seen", ["bob", "carol", "alice"]),
    ],
)
@pytest.mark.parametrize("everything", [True, False])
async def test_sorted_pages_of_one_row_walk_the_whole_list(
    store: Store, sort: UserSort, expected: list[str], everything: bool
) -> None:
    assert await all_pages(store, sort, 1, everything) == expected
    assert await all_pages(store, sort, 2, everything) == expected


async def test_a_filter_counts_only_its_rows(store: Store) -> None:
    mini = compile_filter({"request": {"model": {"equals": "gpt-4o-mini"}}})
    page = await user_page(store, mini, UserQuery())
    assert [(r["user_id"], r["requests"], r["rated"]) for r in page.rows] == [("alice", 2, 1)]
    liked = compile_filter({"feedback": {"rating": {"equals": True}}})
    page = await user_page(store, liked, UserQuery("last_seen"))
    assert [(r["user_id"], r["positive_rate"]) for r in page.rows] == [
        ("carol", 1.0),
        ("alice", 1.0),
    ]
    nobody = compile_filter({"request": {"user_id": {"equals": "nobody"}}})
    assert (await user_page(store, nobody, UserQuery())).rows == []


async def test_the_rollup_follows_new_rows(store: Store) -> None:
    row = Row(id="r7", created_at="2024-05-04T00:00:00.000Z", method="POST",
              path="/v1/chat/completions", outcome="ok", user_id="carol", cost_usd=1.0,
              total_tokens=3)  # fmt: skip
    await store.write_batch([row])
    await store.upsert_feedback("r7", False)
    top = (await user_page(store, ALL, UserQuery("cost", 1))).rows[0]
    assert (top["user_id"], top["requests"], top["rated"], top["positive_rate"]) == (
        "carol", 2, 2, 0.5
    )  # fmt: skip
    assert top == (await user_page(store, EVERY_ROW, UserQuery("cost", 1))).rows[0]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (UserQuery(limit=0), "limit must be"),
        (UserQuery(cursor="nope"), "invalid cursor"),
        (UserQuery("cost", cursor="WyJyZXF1ZXN0cyIsMiwiYWxpY2UiXQ"), "another sort order"),
        (UserQuery("last_seen", cursor="WyJsYXN0X3NlZW4iLDIsImFsaWNlIl0"), "invalid cursor"),
    ],
)
async def test_bad_queries_say_why(store: Store, query: UserQuery, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        await user_page(store, ALL, query)
    with pytest.raises(QueryError, match="cannot sort"):
        await user_page(store, ALL, UserQuery("name"))  # type: ignore[arg-type]
