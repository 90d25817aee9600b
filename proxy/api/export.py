"""GET /v1/export: matching rows streamed as jsonl, openai-chat fine-tuning lines or csv."""

from __future__ import annotations

import logging
import re
from contextlib import aclosing
from typing import Annotated, Any, Literal

import orjson
from aiohttp import web
from multidict import MultiMapping
from pydantic import Field

from proxy.api.http import Param
from proxy.api.models import MAX_OFFSET
from proxy.errors import ApiError
from proxy.state import STORE
from storage.errors import StoreError
from storage.query.datasets import require_dataset
from storage.query.export import FORMATS, ExportCounts, export_chunks
from storage.query.filters import compile_filter, conjoin
from storage.query.selection import SHORTHANDS, selection_of, selection_tree

log = logging.getLogger("relaylog.export")

# The shorthand filters (repeatable ones may be given several times), then a filter tree as
# JSON, the format and a row limit.
PARAMS: tuple[Param, ...] = (
    *(Param(s.name, "query", str if s.choices is None else Literal[s.choices]) for s in SHORTHANDS),
    Param("filter", "query", Annotated[str, Field(description="A filter tree as JSON.")]),
    Param("format", "query", Literal[tuple(FORMATS)]),
    Param("limit", "query", Annotated[int, Field(ge=1)]),
)
EXPORT_PARAMS = frozenset(param.name for param in PARAMS)
# What of a dataset's name goes into its download's file name.
UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


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
    selection = selection_of(lambda s: query.getall(s.name, []) if s.repeat else query.get(s.name))
    return conjoin(tree, selection_tree(selection)), fmt, limit


async def export(request: web.Request) -> web.StreamResponse:
    """Stream the export; a store failure after the first byte breaks the download."""
    tree, fmt, limit = export_request(request.query)
    condition = compile_filter(tree)
    stem = "relaylog-export"
    if "dataset" in request.query:
        # A misspelt dataset is a 404, not an empty download that looks like an empty dataset.
        dataset = await require_dataset(request.app[STORE], request.query["dataset"])
        # Downloads of several datasets keep apart: relaylog-<name>.jsonl.
        name = UNSAFE_IN_FILE_NAME.sub("-", str(dataset["name"])).strip(".-")[:100]
        stem = f"relaylog-{name}" if name else stem
    content_type, extension = FORMATS[fmt]
    response = web.StreamResponse(
        headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="{stem}.{extension}"',
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
