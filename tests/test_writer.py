"""The log writer process: rows committed off the loop, read-your-writes, a writer that dies."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.errors import RowRejected
from storage.models import Row
from storage.sqlite import SQLiteStore


@pytest.mark.parametrize("threaded", [True, False])
async def test_the_inline_sqlite_store_behaves_as_the_threaded_one(
    tmp_path: Path, threaded: bool
) -> None:
    store = SQLiteStore(str(tmp_path / "inline.db"), threaded=threaded)
    await store.open()
    assert await store.fetch("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    row = Row(id="r1", created_at="2026-01-01T00:00:00.000Z", method="POST", path="/v1/x")
    await store.write_batch([row])
    await store.upsert_feedback("r1", True, "fine")
    got = await store.get_request("r1")
    assert got is not None and got["feedback"]["rating"] is True
    # A statement the data breaks (a second feedback row for one request) is refused, as in
    # the threaded store, and rolled back.
    duplicate = (
        "INSERT INTO feedback (request_id, rating, created_at, updated_at) VALUES (?, 0, ?, ?)"
    )
    with pytest.raises(RowRejected):
        await store.transact([(duplicate, ("r1", "t", "t"))])
    assert await store.fetch("SELECT rating FROM feedback") == [{"rating": 1}]
    await store.close()
