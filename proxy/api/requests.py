"""POST /v1/request/query and /v1/request/stats, GET /v1/export: the filter tree at work."""

from __future__ import annotations

import logging
from contextlib import aclosing
from typing import Any

import orjson
from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.api.datasets import DATASET_ROUTES
from proxy.api.http import add_routes, read_body
from proxy.errors import ApiError, envelope
from proxy.state import STORE
from storage.errors import StoreError
from storage.query.export import FORMATS, ExportCounts, export_chunks
from storage.query.filters import compile_filter, conjoin
from storage.query.pages import SORT_ALIASES, SORTS, Direction, PageQuery, query_page
from storage.query.selection import Selection, selection_tree
from storage.query.stats import check_dimensions, request_stats

log = logging.getLogger("relaylog.query")

MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1
CURSOR_HEADER = "Relaylog-Next-Cursor"

NEWEST_FIRST: dict[str, Direction] = {"created_at": "desc"}


class QueryBody(BaseModel):
    """Helicone's request query body, plus an opaque `cursor` for deep pages."""

    model_config = ConfigDict(extra="forbid")

    filter: Any = "all"
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    limit: int = Field(100, ge=1, le=MAX_LIMIT)
    sort: dict[str, Direction] = Field(default_factory=lambda: dict(NEWEST_FIRST))
    cursor: str | None = None
    # Helicone SDKs send these; relaylog accepts them and they change nothing.
    isCached: bool | None = None
    includeInputs: bool | None = None
    isPartOfExperiment: bool | None = None
    isScored: bool | None = None

    @field_validator("sort")
    @classmethod
    def _one_known_key(cls, sort: dict[str, str]) -> dict[str, str]:
        if len(sort) != 1:
            raise ValueError("sort by exactly one of created_at, latency, cost")
        (name, direction), *_ = sort.items()
        name = SORT_ALIASES.get(name, name)
        if name not in SORTS:
            raise ValueError(f"cannot sort by {name!r}; use created_at, latency or cost")
        return {name: direction}

    def page(self) -> PageQuery:
        (sort, direction), *_ = self.sort.items()
        return PageQuery(self.filter, sort, direction, self.limit, self.offset, self.cursor)


class StatsBody(BaseModel):
    """A filter tree and up to three dimensions to group by."""

    model_config = ConfigDict(extra="forbid")

    filter: Any = "all"
    group_by: list[str] = Field(default_factory=list, max_length=3)

    @field_validator("group_by", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("group_by")
    @classmethod
    def _known_dimensions(cls, names: list[str]) -> list[str]:
        check_dimensions(names)
        return names


async def request_query(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, QueryBody)
    page = await query_page(request.app[STORE], body.page())
    response = envelope(page.rows)
    if page.next_cursor is not None:
        response.headers[CURSOR_HEADER] = page.next_cursor
    return response


async def stats(request: web.Request) -> web.StreamResponse:
    body = await read_body(request, StatsBody)
    condition = compile_filter(body.filter)
    return envelope(await request_stats(request.app[STORE], condition, body.group_by))


EXPORT_PARAMS = frozenset(
    {"model", "user", "session", "outcome", "property", "score", "feedback", "since", "until"}
    | {"dataset", "filter", "format", "limit"}
)


def export_request(query: MultiMapping[str]) -> tuple[Any, str, int | None]:
    """(filter tree, format, limit) from GET /v1/export's query string."""
    for name in query:
        if name not in EXPORT_PARAMS:
            raise ApiError(400, f"unknown query parameter {name!r}", code="invalid_query")
    fmt = query.get("format", "jsonl")
    if fmt not in FORMATS:
        raise ApiError(400, f"format must be one of {', '.join(FORMATS)}", code="invalid_query")
    limit = None
    if "limit" in query:
        try:
            limit = int(query["limit"])
        except ValueError:
            limit = 0
        if not 0 < limit <= MAX_OFFSET:
            raise ApiError(400, "limit must be a positive integer", code="invalid_query")
    tree: Any = "all"
    if "filter" in query:
        try:
            tree = orjson.loads(query["filter"])
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"filter is not valid JSON: {exc}", code="invalid_query") from None
    selection = Selection(
        feedback=query.get("feedback"),
        models=query.getall("model", []),
        users=query.getall("user", []),
        sessions=query.getall("session", []),
        outcomes=query.getall("outcome", []),
        properties=query.getall("property", []),
        scores=query.getall("score", []),
        since=query.get("since"),
        until=query.get("until"),
        dataset=query.get("dataset"),
    )
    return conjoin(tree, selection_tree(selection)), fmt, limit


async def export(request: web.Request) -> web.StreamResponse:
    tree, fmt, limit = export_request(request.query)
    condition = compile_filter(tree)
    content_type, extension = FORMATS[fmt]
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="relaylog-export.{extension}"',
        }
    )
    await response.prepare(request)
    counts = ExportCounts()
    chunks = export_chunks(request.app[STORE], condition, fmt, counts, limit=limit)
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                await response.write(chunk)
    except ConnectionResetError:
        return response
    except StoreError as exc:
        # The status line is sent: drop the connection before the last chunk so the client
        # sees a broken download, not a complete one.
        log.error("export stopped after %d rows: %s", counts.rows, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


def add_query_routes(app: web.Application) -> None:
    """Query, stats, export and dataset routes. Register them before the forward catch-all
    and before any `/v1/request/{id}` route, which would otherwise match `query` as an id."""
    add_routes(
        app,
        [
            ("/v1/request/query", "POST", request_query),
            ("/v1/request/stats", "POST", stats),
            ("/v1/export", "GET", export),
            *DATASET_ROUTES,
        ],
    )
