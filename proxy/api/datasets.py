"""Datasets (Helicone's "Add to dataset") under Helicone's `/v1/helicone-dataset` routes.

storage/query/datasets.py holds the operations; `GET /v1/export?dataset=NAME` or
`relaylog export --dataset NAME` writes a dataset out.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from proxy.api.models import DatasetCreateBody, DatasetListBody, DatasetMutateBody
from proxy.envelopes import envelope
from proxy.state import STORE
from storage.query.datasets import (
    change_rows,
    create_dataset,
    delete_dataset,
    list_datasets,
    require_dataset,
    unknown_ids,
)
from storage.query.filters import Condition, compile_filter


def _condition(tree: Any, where: str) -> Condition | None:
    return None if tree is None else compile_filter(tree, where)


async def create(request: web.Request, body: DatasetCreateBody) -> web.StreamResponse:
    """A new dataset from request ids and/or a filter tree; 409 if the name is taken."""
    store = request.app[STORE]
    condition = _condition(body.filter, "filter")
    unknown = await unknown_ids(store, body.requestIds)
    created = await create_dataset(
        store, body.datasetName, body.description, body.requestIds, condition
    )
    return envelope({**created, "unknown": unknown}, status=201)


async def query(request: web.Request, body: DatasetListBody) -> web.StreamResponse:
    """Every dataset, or those with the given ids, with their row counts."""
    return envelope(await list_datasets(request.app[STORE], body.datasetIds))


async def mutate(request: web.Request, body: DatasetMutateBody) -> web.StreamResponse:
    """Add or remove rows by id, or add rows by filter, in one transaction."""
    store = request.app[STORE]
    dataset = await require_dataset(store, request.match_info["id"])
    condition = _condition(body.addFilter, "addFilter")
    unknown = await unknown_ids(store, body.addRequests)
    changed = await change_rows(
        store, dataset["id"], body.addRequests, body.removeRequests, condition
    )
    return envelope({"datasetId": dataset["id"], **changed, "unknown": unknown})


async def delete(request: web.Request) -> web.StreamResponse:
    """Delete a dataset; its requests stay logged."""
    store = request.app[STORE]
    dataset = await require_dataset(store, request.match_info["id"])
    await delete_dataset(store, dataset["id"])
    return envelope({"datasetId": dataset["id"], "deleted": True})
