"""Datasets (Helicone's "Add to dataset"): named sets of logged requests to curate and export.

A dataset is created from request ids or a filter, rows are added or removed by id (or added
by filter), each change in one transaction; exports select a dataset's rows by its name.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from storage import Store
from storage.errors import DatasetExists, StoreError, UnknownDataset
from storage.models import utc_iso
from storage.query.filters import Condition
from storage.sql import Statement, chunked

# Most rows one filter adds in one call (one write transaction), newest first.
MAX_FILTER_ROWS = 100_000
SELECT = "SELECT CAST(? AS TEXT), q.id, CAST(? AS TEXT) FROM requests q WHERE q.id IN "
INSERT = "INSERT INTO dataset_rows (dataset_id, request_id, added_at) "


async def find_dataset(store: Store, ref: str) -> dict[str, Any] | None:
    """The dataset with id `ref`, else the one named `ref`."""
    if "\x00" in ref:
        return None
    rows = await store.fetch(
        "SELECT id, name, description, created_at, updated_at FROM datasets "
        "WHERE id = ? OR name = ? ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END",
        [ref, ref, ref],
    )
    return rows[0] if rows else None


async def require_dataset(store: Store, ref: str) -> dict[str, Any]:
    """The dataset with id or name `ref`; UnknownDataset if there is none."""
    dataset = await find_dataset(store, ref)
    if dataset is None:
        raise UnknownDataset(ref)
    return dataset


async def unknown_ids(store: Store, ids: Sequence[str]) -> list[str]:
    """The ids among `ids` that name no logged request."""
    return sorted(set(ids) - await store.existing_ids(ids))


def _add_statements(
    dataset_id: str, ids: Sequence[str], condition: Condition | None, now: str
) -> list[Statement]:
    statements = chunked(
        f"{INSERT}{SELECT}({{ids}}) ON CONFLICT DO NOTHING", ids, before=[dataset_id, now]
    )
    if condition is not None:
        params: list[Any] = [dataset_id, now, *condition.params, MAX_FILTER_ROWS]
        newest = (
            f"(SELECT r.id FROM requests r WHERE {condition.sql} "
            "ORDER BY r.created_at DESC LIMIT ?)"
        )
        statements.append((f"{INSERT}{SELECT}{newest} ON CONFLICT DO NOTHING", params))
    return statements


async def change_rows(
    store: Store,
    dataset_id: str,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    condition: Condition | None = None,
    first: Sequence[Statement] = (),
) -> dict[str, int]:
    """Run `first`, then remove and add rows, in one transaction; how many rows changed."""
    now = utc_iso(time.time())
    count: Statement = ("SELECT COUNT(*) AS n FROM dataset_rows WHERE dataset_id = ?", [dataset_id])
    removes = chunked(
        "DELETE FROM dataset_rows WHERE dataset_id = ? AND request_id IN ({ids})",
        remove,
        before=[dataset_id],
    )
    statements = [*first, count, *removes, count, *_add_statements(dataset_id, add, condition, now)]
    statements += [count, ("UPDATE datasets SET updated_at = ? WHERE id = ?", [now, dataset_id])]
    results = await store.transact(statements)
    at = len(first)
    before, after_removing, after_adding = (
        int(results[i][0]["n"]) for i in (at, at + 1 + len(removes), len(statements) - 2)
    )
    return {
        "added": after_adding - after_removing,
        "removed": before - after_removing,
        "rows": after_adding,
    }


async def create_dataset(
    store: Store,
    name: str,
    description: str | None = None,
    ids: Sequence[str] = (),
    condition: Condition | None = None,
) -> dict[str, Any]:
    """A new dataset holding the given requests (those that exist) and the filter's."""
    if await find_dataset(store, name) is not None:
        raise DatasetExists(name)
    dataset_id = str(uuid.uuid4())
    now = utc_iso(time.time())
    insert: Statement = (
        "INSERT INTO datasets (id, name, description, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [dataset_id, name, description, now, now],
    )
    try:
        changed = await change_rows(store, dataset_id, ids, (), condition, first=[insert])
    except StoreError:
        # Another call created the name between the check and the insert (the unique
        # constraint refused ours, and the transaction rolled back).
        if await find_dataset(store, name) is not None:
            raise DatasetExists(name) from None
        raise
    return {"datasetId": dataset_id, "name": name, **changed}


async def list_datasets(store: Store, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every dataset (or those with the given ids) and its row count, oldest first."""
    select = (
        "SELECT d.id, d.name, d.description, d.created_at, d.updated_at, "
        "(SELECT COUNT(*) FROM dataset_rows dr WHERE dr.dataset_id = d.id) AS requests_count "
        "FROM datasets d "
    )
    if ids is None:
        return await store.fetch(f"{select}ORDER BY d.created_at, d.name")
    rows = await store.fetch_in(f"{select}WHERE d.id IN ({{ids}})", sorted(set(ids)))
    return sorted(rows, key=lambda d: (d["created_at"], d["name"]))


async def delete_dataset(store: Store, dataset_id: str) -> None:
    """Delete a dataset and its row list; the logged requests stay."""
    await store.transact(
        [
            ("DELETE FROM dataset_rows WHERE dataset_id = ?", [dataset_id]),
            ("DELETE FROM datasets WHERE id = ?", [dataset_id]),
        ]
    )
