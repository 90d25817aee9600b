"""storage.query.sessions: the session list from rollup_sessions or the filtered rows, keyset
pages and search, and one session's requests with its rating, in both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import Row, Store, open_store
from storage.errors import QueryError
from storage.query.filters import compile_filter
from storage.query.sessions import SessionQuery, session_detail, session_page
from tests.logbook import fill

ALL = compile_filter("all")
EVERY_ROW = compile_filter({"request": {"created_at": {"gte": "2000-01-01"}}})
CHECKOUT = [
    Row(id=f"c{n}", created_at=f"2024-05-04T10:00:0{n}.000Z", method="POST",
        path="/v1/chat/completions", outcome="ok", session_id="s3", session_name="Checkout 50%",
        session_path=path, latency_ms=10.0 * n, total_tokens=n, cost_usd=0.5)
    for n, path in enumerate(["/cart", "/cart/pay", "/cart/pay/retry"])
]  # fmt: skip


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    await fill(opened)
    await opened.write_batch(CHECKOUT)
    yield opened
    await opened.close()


async def ids(store: Store, condition: object = ALL, **query: object) -> list[str]:
    page = await session_page(store, condition, SessionQuery(**query))  # type: ignore[arg-type]
    return [row["session_id"] for row in page.rows]


async def test_sessions_newest_first_with_totals_and_rating(store: Store) -> None:
    page = await session_page(store, ALL, SessionQuery())
    assert page.next_cursor is None
    assert [row["session_id"] for row in page.rows] == ["s3", "s2", "s1"]
    s3, s2, s1 = page.rows
    assert (s3["name"], s3["requests"], s3["total_tokens"], s3["cost_usd"], s3["rating"]) == (
        "Checkout 50%", 3, 3, 1.5, None
    )  # fmt: skip
    assert (s3["first_at"], s3["last_at"]) == (CHECKOUT[0].created_at, CHECKOUT[2].created_at)
    assert (s1["requests"], s1["total_tokens"], s1["cost_usd"], s1["rating"]) == (
        2, 165, 0.011, True
    )  # fmt: skip
    assert (s2["requests"], s2["rating"], s2["rated_at"] is not None) == (2, False, True)
    grouped = await session_page(store, EVERY_ROW, SessionQuery())
    assert grouped.rows == page.rows


@pytest.mark.parametrize("condition", [ALL, EVERY_ROW])
async def test_pages_of_one_walk_the_list(store: Store, condition: object) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = await session_page(store, condition, SessionQuery(limit=1, cursor=cursor))  # type: ignore[arg-type]
        seen += [row["session_id"] for row in page.rows]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["s3", "s2", "s1"]


async def test_search_by_name_or_id_and_filters(store: Store) -> None:
    assert await ids(store, search="checkout") == ["s3"]
    assert await ids(store, search="50%") == ["s3"]
    assert await ids(store, search="t%5") == []  # % is literal text, not a wildcard
    assert await ids(store, search="S1") == ["s1"]
    assert await ids(store, search="s") == ["s3", "s2", "s1"]
    assert await ids(store, search="k_u") == []
    bob = compile_filter({"request": {"user_id": {"equals": "bob"}}})
    page = await session_page(store, bob, SessionQuery())
    assert [(r["session_id"], r["requests"]) for r in page.rows] == [("s2", 1), ("s1", 1)]
    assert await ids(store, bob, search="s2") == ["s2"]


async def test_one_session_oldest_first(store: Store) -> None:
    detail = await session_detail(store, "s3")
    assert detail is not None
    assert [row["id"] for row in detail["rows"]] == ["c0", "c1", "c2"]
    assert [row["session_path"] for row in detail["rows"]] == [r.session_path for r in CHECKOUT]
    assert detail["requests"] == 3 and detail["truncated"] is False
    short = await session_detail(store, "s3", limit=2)
    assert short is not None and short["truncated"] is True and len(short["rows"]) == 2
    await store.upsert_session_feedback("s3", False)
    rated = await session_detail(store, "s3")
    assert rated is not None and rated["rating"] is False
    assert await session_detail(store, "nope") is None


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        (SessionQuery(limit=0), "limit must be"),
        (SessionQuery(cursor="nope"), "invalid cursor"),
        (SessionQuery(cursor="WzEsMl0"), "invalid cursor"),
        (SessionQuery(search="x" * 201), "search for"),
    ],
)
async def test_bad_queries_say_why(store: Store, query: SessionQuery, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        await session_page(store, ALL, query)
