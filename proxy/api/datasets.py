"""Datasets (Helicone's "Add to dataset"): named sets of logged requests to curate and export.

The routes follow Helicone's `/v1/helicone-dataset` API; storage/query/datasets.py holds the
operations, and `GET /v1/export?dataset=NAME` or `relaylog export --dataset NAME` writes one out.
"""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from proxy.api.http import Handler, read_body
from proxy.errors import envelope
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

MAX_IDS = 10_000

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
