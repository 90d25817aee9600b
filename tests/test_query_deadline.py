"""Read deadlines: a statement still running at its deadline is stopped by the store itself
(SQLite: interrupted; PostgreSQL: cancelled on the server), a cancelled read stops its
statement, and the dashboard answers such a page 503 "narrow the time range", never 500.

Each test bounds itself with BOUND: a statement that is not stopped fails the test (as a
TimeoutError) instead of hanging it. No test asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.state import STORE
from storage.base import READ_DEADLINE, Store, open_store, read_deadline
from storage.errors import QueryTimeout, StoreError
from storage.postgres import PostgresStore
from storage.sqlite import SQLiteStore
from tests.helpers import ProxyFactory
from tests.logbook import fill

# Counts an endless sequence: never finishes on either store unless stopped.
NEVER = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
BOUND = 30.0
# The inline store runs statements on the loop's own thread, where no asyncio timeout can stop a
# runaway one: this count ends by itself (after seconds, far past SHORT), so a broken deadline
# fails the test instead of hanging the suite.
FINITE = (
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 100000000) "
    "SELECT count(*) FROM r"
)
SHORT = 0.3


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """Each backend; PostgreSQL with a pool of one connection, so a read after a stopped one
    runs on the very connection the stopped statement held."""
    opened: Store = (
        PostgresStore(store_url, pool_size=1)
        if store_url.startswith("postgresql://")
        else open_store(store_url)
    )
    await opened.open()
    yield opened
    await opened.close()


async def test_a_read_past_its_deadline_is_stopped_and_the_connection_answers_next(
    store: Store,
) -> None:
    async with asyncio.timeout(BOUND):
        with pytest.raises(QueryTimeout, match="time limit") as stopped, read_deadline(SHORT):
            await store.fetch(NEVER)
        assert await store.fetch("SELECT 1 AS one") == [{"one": 1}]
        with read_deadline(BOUND):  # a read that ends in time is answered as without one
            found = await store.fetch("SELECT count(*) AS n FROM requests WHERE id = ?", ("r1",))
            assert found == [{"n": 0}]
    assert isinstance(stopped.value, StoreError)  # every caller's StoreError handling holds
    if isinstance(store, SQLiteStore):
        cause = stopped.value.__cause__
        assert isinstance(cause, sqlite3.OperationalError)  # the running statement was interrupted
        assert cause.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT
    assert READ_DEADLINE.get() is None


async def test_a_deadline_already_past_runs_no_statement(store: Store) -> None:
    async with asyncio.timeout(BOUND):
        with read_deadline(SHORT):
            await asyncio.sleep(SHORT * 2)
            with pytest.raises(QueryTimeout):
                await store.fetch("SELECT 1")
        assert await store.fetch("SELECT 1 AS one") == [{"one": 1}]


async def test_a_cancelled_read_interrupts_its_sqlite_statement(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "relaylog.db"))
    await store.open()
    try:
        async with asyncio.timeout(BOUND):
            endless = asyncio.create_task(store.fetch(NEVER))  # no deadline: only cancelled
            while not store.reader.busy:
                await asyncio.sleep(0.01)
            endless.cancel()
            with pytest.raises(asyncio.CancelledError):
                await endless
            # Queued behind the endless statement, this would never be answered.
            assert await store.fetch("SELECT 1 AS one") == [{"one": 1}]
        assert not store.reader.busy
    finally:
        await store.close()


async def test_queued_reads_past_their_deadline_never_start(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "relaylog.db"))
    await store.open()
    try:
        async with asyncio.timeout(BOUND):
            with read_deadline(SHORT):
                reads = [asyncio.create_task(store.fetch(NEVER)) for _ in range(3)]
                results = await asyncio.gather(*reads, return_exceptions=True)
            assert all(isinstance(result, QueryTimeout) for result in results), results
            assert await store.fetch("SELECT 1 AS one") == [{"one": 1}]
    finally:
        await store.close()


async def test_an_inline_store_honours_the_deadline_with_a_progress_handler(
    tmp_path: Path,
) -> None:
    """The writer process's store runs statements on the loop's own thread (threaded=False)."""
    store = SQLiteStore(str(tmp_path / "relaylog.db"), threaded=False)
    await store.open()
    try:
        with pytest.raises(QueryTimeout) as stopped, read_deadline(SHORT):
            await store.fetch(FINITE)
        assert isinstance(stopped.value.__cause__, sqlite3.OperationalError)
        assert await store.fetch("SELECT 1 AS one") == [{"one": 1}]
    finally:
        await store.close()


def test_an_inner_deadline_never_extends_an_outer_one() -> None:
    with read_deadline(1.0) as outer:
        with read_deadline(BOUND) as inner:
            assert inner == outer == READ_DEADLINE.get()
        with read_deadline(0.01) as sooner:
            assert sooner < outer
        assert READ_DEADLINE.get() == outer
    assert READ_DEADLINE.get() is None


@pytest.mark.parametrize("seconds", [0.0, -1.0, math.nan])
def test_a_deadline_must_be_a_positive_number_of_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"), read_deadline(seconds):
        pass


# The requests table swapped for a view whose rows never come: any read of it never ends.
STALL = [
    "ALTER TABLE requests RENAME TO requests_kept",
    f"CREATE VIEW requests AS SELECT * FROM requests_kept WHERE ({NEVER}) > 0",
]
UNSTALL = ["DROP VIEW requests", "ALTER TABLE requests_kept RENAME TO requests"]


async def test_a_dashboard_page_whose_read_overruns_answers_503_and_the_app_serves_on(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    client = await make_proxy(store={"db": store_url}, dashboard={"query_timeout_s": SHORT})
    store = client.app[STORE]
    await fill(store)
    async with asyncio.timeout(BOUND):
        await store.transact([(sql, ()) for sql in STALL])
        response = await client.get("/requests")
        html = await response.text()
        assert response.status == 503, html[:500]
        assert "narrow the time range" in html
        part = await client.get("/requests/rows")
        assert part.status == 503
        assert (await part.text()).startswith("This view took longer than 0.3 s")
        # The stopped statements hold nothing: the same page reads the restored table at once.
        await store.transact([(sql, ()) for sql in UNSTALL])
        response = await client.get("/requests")
        assert response.status == 200
        assert 'data-id="r6"' in await response.text()
