"""Datasets (Helicone's "Add to dataset"): named sets of logged requests to curate and export.

A dataset is created from request ids or a filter tree, rows are added or removed by id (or
added by filter), and `GET /v1/export?dataset=NAME` or `relaylog export --dataset NAME` writes
it out. The routes follow Helicone's `/v1/helicone-dataset` API.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from proxy.api.http import Handler, read_body
from proxy.errors import ApiError, envelope
from proxy.state import STORE
from storage import Store
from storage.models import utc_iso
from storage.query.filters import Condition, compile_filter

MAX_IDS = 10_000
# Most rows one filter adds in one call (one write transaction), newest first.
MAX_FILTER_ROWS = 100_000
# SQLite's default limit on `?` parameters in one statement is 999 on old builds.
ID_CHUNK = 500

# Text columns in PostgreSQL cannot hold NUL, so no name or id may contain one.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=NO_NUL)
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
RequestIds = Annotated[list[RequestId], Field(max_length=MAX_IDS)]


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasetName: Name
    requestIds: RequestIds = Field(default_factory=list)
    filter: Any = None
    description: Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)] | None = None
    # Helicone's optional metadata; relaylog keeps none of it.
    meta: dict[str, Any] | None = None


class MutateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    addRequests: RequestIds = Field(default_factory=list)
    removeRequests: RequestIds = Field(default_factory=list)
    addFilter: Any = None


class ListBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasetIds: list[RequestId] | None = Field(None, max_length=MAX_IDS)


def _placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


async def find_dataset(store: Store, ref: str) -> dict[str, Any] | None:
    """The dataset with id `ref`, else the one named `ref`."""
    rows = await store.fetch(
        "SELECT id, name, description, created_at, updated_at FROM datasets "
        "WHERE id = ? OR name = ? ORDER BY CASE WHEN id = ? THEN 0 ELSE 1 END",
        [ref, ref, ref],
    )
    return rows[0] if rows else None


async def require_dataset(store: Store, ref: str) -> dict[str, Any]:
    dataset = None if "\x00" in ref else await find_dataset(store, ref)
    if dataset is None:
        raise ApiError(404, f"no dataset with id or name {ref!r}", code="unknown_dataset")
    return dataset


async def unknown_ids(store: Store, ids: Sequence[str]) -> list[str]:
    """The ids among `ids` that name no logged request."""
    found: set[str] = set()
    for start in range(0, len(ids), ID_CHUNK):
        chunk = list(ids[start : start + ID_CHUNK])
        rows = await store.fetch(
            f"SELECT id FROM requests WHERE id IN ({_placeholders(chunk)})", chunk
        )
        found.update(r["id"] for r in rows)
    return sorted(set(ids) - found)


Statement = tuple[str, list[Any]]


def _add_statements(
    dataset_id: str, ids: Sequence[str], condition: Condition | None, now: str
) -> list[Statement]:
    select = "SELECT CAST(? AS TEXT), q.id, CAST(? AS TEXT) FROM requests q WHERE q.id IN "
    insert = "INSERT INTO dataset_rows (dataset_id, request_id, added_at) "
    statements = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = list(ids[start : start + ID_CHUNK])
        statements.append(
            (
                f"{insert}{select}({_placeholders(chunk)}) ON CONFLICT DO NOTHING",
                [dataset_id, now, *chunk],
            )
        )
    if condition is not None:
        params: list[Any] = [dataset_id, now, *condition.params, MAX_FILTER_ROWS]
        newest = (
            f"(SELECT r.id FROM requests r WHERE {condition.sql} "
            "ORDER BY r.created_at DESC LIMIT ?)"
        )
        statements.append(
            (
                f"{insert}{select}{newest} ON CONFLICT DO NOTHING",
                params,
            )
        )
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
    removes: list[Statement] = []
    for start in range(0, len(remove), ID_CHUNK):
        chunk = list(remove[start : start + ID_CHUNK])
        removes.append(
            (
                "DELETE FROM dataset_rows WHERE dataset_id = ? "
                f"AND request_id IN ({_placeholders(chunk)})",
                [dataset_id, *chunk],
            )
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
        raise ApiError(409, f"a dataset named {name!r} exists", code="dataset_exists")
    dataset_id = str(uuid.uuid4())
    now = utc_iso(time.time())
    insert: Statement = (
        "INSERT INTO datasets (id, name, description, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [dataset_id, name, description, now, now],
    )
    changed = await change_rows(store, dataset_id, ids, (), condition, first=[insert])
    return {"datasetId": dataset_id, "name": name, **changed}


async def list_datasets(store: Store, ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    where, params = "", list(ids or [])
    if ids is not None:
        where = f"WHERE d.id IN ({_placeholders(ids)}) " if ids else "WHERE 1 = 0 "
    return await store.fetch(
        "SELECT d.id, d.name, d.description, d.created_at, d.updated_at, "
        "(SELECT COUNT(*) FROM dataset_rows dr WHERE dr.dataset_id = d.id) AS requests_count "
        f"FROM datasets d {where}ORDER BY d.created_at, d.name",
        params,
    )


async def delete_dataset(store: Store, dataset_id: str) -> None:
    await store.transact(
        [
            ("DELETE FROM dataset_rows WHERE dataset_id = ?", [dataset_id]),
            ("DELETE FROM datasets WHERE id = ?", [dataset_id]),
        ]
    )


def _condition(tree: Any, where: str) -> Condition | None:
    return None if tree is None else compile_filter(tree, where)


async def create(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, CreateBody)
    store = request.app[STORE]
    condition = _condition(body.filter, "filter")
    unknown = await unknown_ids(store, body.requestIds)
    created = await create_dataset(
        store, body.datasetName, body.description, body.requestIds, condition
    )
    return envelope({**created, "unknown": unknown}, status=201)


async def query(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, ListBody)
    return envelope(await list_datasets(request.app[STORE], body.datasetIds))


async def mutate(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, MutateBody)
    store = request.app[STORE]
    dataset = await require_dataset(store, request.match_info["id"])
    condition = _condition(body.addFilter, "addFilter")
    unknown = await unknown_ids(store, body.addRequests)
    changed = await change_rows(
        store, dataset["id"], body.addRequests, body.removeRequests, condition
    )
    return envelope({"datasetId": dataset["id"], **changed, "unknown": unknown})


async def delete(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    dataset = await require_dataset(store, request.match_info["id"])
    await delete_dataset(store, dataset["id"])
    return envelope({"datasetId": dataset["id"], "deleted": True})


DATASET_ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("/v1/helicone-dataset", "POST", create),
    ("/v1/helicone-dataset/query", "POST", query),
    ("/v1/helicone-dataset/{id}/mutate", "POST", mutate),
    ("/v1/helicone-dataset/{id}/delete", "POST", delete),
)
