"""POST /v1/request/query and /v1/request/stats, GET /v1/export: the filter tree at work."""

from __future__ import annotations

import base64
import binascii
import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel, ConfigDict, Field, field_validator

from proxy.api.datasets import DATASET_ROUTES
from proxy.api.http import add_routes, read_body
from proxy.errors import ApiError, envelope
from proxy.state import STORE
from storage import Store
from storage.base import StoreError
from storage.models import json_or_text
from storage.query.export import FORMATS, ExportCounts, export_chunks, scores_for
from storage.query.filters import compile_filter, conjoin
from storage.query.selection import Selection, selection_tree
from storage.query.stats import check_dimensions, request_stats

log = logging.getLogger("relaylog.query")

MAX_LIMIT = 1000
MAX_OFFSET = 2**31 - 1
# A sort name and the SQL it orders by; NULL sorts as -1 (before 0 ascending) in every store.
SORTS = {
    "created_at": "r.created_at",
    "latency": "COALESCE(r.latency_ms, -1)",
    "cost": "COALESCE(r.cost_usd, -1)",
}
SORT_ALIASES = {"latency_ms": "latency", "cost_usd": "cost"}
CURSOR_HEADER = "Relaylog-Next-Cursor"

Direction = Literal["asc", "desc"]
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


@dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(sort: str, direction: str, value: Any, last_id: str) -> str:
    raw = orjson.dumps([sort, direction, value, last_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str, direction: str) -> tuple[Any, str]:
    """The (sort value, id) a cursor continues after; 400 unless it came from the same sort."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, order, value, last_id = orjson.loads(raw)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise ApiError(400, "invalid cursor", code="invalid_cursor") from None
    expected = str if sort == "created_at" else float | int
    if (kind, order) != (sort, direction) or not isinstance(last_id, str):
        raise ApiError(400, "the cursor belongs to another sort order", code="invalid_cursor")
    if isinstance(value, bool) or not isinstance(value, expected) or "\x00" in f"{value}{last_id}":
        raise ApiError(400, "invalid cursor", code="invalid_cursor")
    return value, last_id


def helicone_row(row: dict[str, Any], scores: dict[str, float]) -> dict[str, Any]:
    """A logged exchange under Helicone's field names, with relaylog's extra fields."""
    properties = orjson.loads(row["properties"] or "{}")
    rating = row["feedback_rating"]
    return {
        "request_id": row["id"],
        "request_created_at": row["created_at"],
        "request_method": row["method"],
        "request_path": row["path"],
        "request_user_id": row["user_id"],
        "request_model": row["request_model"],
        "request_body": json_or_text(row["request_body"]),
        "request_properties": properties,
        "properties": properties,
        "response_status": row["status"],
        "response_model": row["response_model"],
        "response_body": json_or_text(row["response_body"]),
        "model": row["model"],
        "outcome": row["outcome"],
        "is_stream": bool(row["is_stream"]),
        "delay_ms": row["latency_ms"],
        "time_to_first_token": row["ttft_ms"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "prompt_cache_read_tokens": row["cached_tokens"],
        "cost": row["cost_usd"],
        "finish_reason": row["finish_reason"],
        "session_id": row["session_id"],
        "session_path": row["session_path"],
        "session_name": row["session_name"],
        "feedback_rating": None if rating is None else bool(rating),
        "feedback_comment": row["feedback_comment"],
        "scores": scores,
        "upstream_request_id": row["upstream_request_id"],
        "error": row["error"],
    }


async def query_page(store: Store, body: QueryBody) -> Page:
    """One page of matching rows in the body's order, and the cursor to the next page."""
    condition = compile_filter(body.filter)
    (sort, direction), *_ = body.sort.items()
    order_by = SORTS[sort]
    where, params = [condition.sql], list(condition.params)
    if body.cursor is not None:
        value, last_id = decode_cursor(body.cursor, sort, direction)
        where.append(f"({order_by}, r.id) {'<' if direction == 'desc' else '>'} (?, ?)")
        params += [value, last_id]
    rows = await store.fetch(
        f"SELECT r.*, {order_by} AS sort_key, f.rating AS feedback_rating, "
        "f.comment AS feedback_comment FROM requests r "
        "LEFT JOIN feedback f ON f.request_id = r.id "
        f"WHERE ({') AND ('.join(where)}) "
        f"ORDER BY {order_by} {direction.upper()}, r.id {direction.upper()} LIMIT ? OFFSET ?",
        [*params, body.limit, body.offset],
    )
    scores = await scores_for(store, [r["id"] for r in rows])
    next_cursor = None
    if len(rows) == body.limit:
        last = rows[-1]
        next_cursor = encode_cursor(sort, direction, last["sort_key"], last["id"])
    return Page([helicone_row(r, scores.get(r["id"], {})) for r in rows], next_cursor)


async def request_query(request: web.Request) -> web.StreamResponse:
    page = await query_page(request.app[STORE], await read_body(request, QueryBody))
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
