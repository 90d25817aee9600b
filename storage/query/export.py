"""Export formats shared by GET /v1/export and `relaylog export`: jsonl, openai-chat and csv.

Matching rows are read oldest first in keyset batches, so memory stays flat however many
match. `openai-chat` writes one fine-tuning example per successful chat completion: the
request's messages (and tools) followed by the assistant's reply, tool calls included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from storage import Store
from storage.models import ROW_COLUMNS, json_or_text
from storage.query.filters import Condition
from storage.query.rows import SELECT_RECORD, present, scores_for

BATCH_ROWS = 500
FORMATS = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "openai-chat": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
}
# What a chat example needs: no feedback, scores or headers.
SELECT_CHATS = (
    "SELECT r.id, r.created_at, r.path, r.outcome, r.request_body, r.response_body FROM requests r"
)
CSV_COLUMNS = (
    *(c for c in ROW_COLUMNS if c != "request_headers"),
    "feedback_rating",
    "feedback_comment",
    "session_rating",
    "scores",
)
# The message fields OpenAI's chat fine-tuning format accepts, per role.
MESSAGE_FIELDS = {
    "system": ("content", "name"),
    "user": ("content", "name"),
    "assistant": ("content", "name", "tool_calls"),
    "tool": ("content", "tool_call_id"),
}
ROLE_ALIASES = {"developer": "system"}


@dataclass(slots=True)
class ExportCounts:
    """Rows read and lines written so far (openai-chat skips rows that are not examples)."""

    rows: int = 0
    written: int = 0

    @property
    def skipped(self) -> int:
        return self.rows - self.written


async def read_rows(
    store: Store, condition: Condition, limit: int | None = None, select: str = SELECT_RECORD
) -> AsyncGenerator[list[dict[str, Any]]]:
    """Matching rows oldest first, a batch at a time; full rows come with their `scores`."""
    after: list[Any] = []
    remaining = limit
    while remaining is None or remaining > 0:
        size = BATCH_ROWS if remaining is None else min(BATCH_ROWS, remaining)
        keyset = " AND (r.created_at, r.id) > (?, ?)" if after else ""
        rows = await store.fetch(
            f"{select} WHERE ({condition.sql}){keyset} ORDER BY r.created_at, r.id LIMIT ?",
            [*condition.params, *after, size],
        )
        if not rows:
            return
        if select == SELECT_RECORD:
            scores = await scores_for(store, [r["id"] for r in rows])
            for row in rows:
                row["scores"] = scores.get(row["id"], {})
        yield rows
        if len(rows) < size:
            return
        after = [rows[-1]["created_at"], rows[-1]["id"]]
        if remaining is not None:
            remaining -= len(rows)


def _tool_calls(calls: Any) -> list[dict[str, Any]] | None:
    """Tool calls in the fine-tuning shape (arguments as a JSON string), or None if malformed."""
    if not isinstance(calls, list) or not calls:
        return None
    out = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            return None
        arguments = function.get("arguments", "")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments).decode()
        out.append(
            {
                "id": call.get("id") or f"call_{index}",
                "type": "function",
                "function": {"name": function["name"], "arguments": arguments},
            }
        )
    return out


def _message(message: Any) -> dict[str, Any] | None:
    """A chat message reduced to the fields fine-tuning accepts, or None if it cannot be."""
    role = message.get("role") if isinstance(message, dict) else None
    if not isinstance(role, str):
        return None
    role = ROLE_ALIASES.get(role, role)
    fields = MESSAGE_FIELDS.get(role)
    if fields is None:
        return None
    out: dict[str, Any] = {"role": role}
    for name in fields:
        if message.get(name) is not None:
            out[name] = message[name]
    if "tool_calls" in out:
        calls = _tool_calls(out["tool_calls"])
        if calls is None:
            return None
        out["tool_calls"] = calls
    if not isinstance(out.get("content"), str | list) and "tool_calls" not in out:
        return None
    if role == "tool" and not isinstance(out.get("tool_call_id"), str):
        return None
    return out


def chat_example(row: dict[str, Any]) -> dict[str, Any] | None:
    """One fine-tuning example from a successful chat completion, or None for other rows."""
    if row["outcome"] != "ok" or not str(row["path"]).endswith("/chat/completions"):
        return None
    request, response = json_or_text(row["request_body"]), json_or_text(row["response_body"])
    if not isinstance(request, dict) or not isinstance(response, dict):
        return None
    choices = response.get("choices")
    if not isinstance(request.get("messages"), list) or not isinstance(choices, list):
        return None
    reply = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    messages = []
    for message in [*request["messages"], reply]:
        cleaned = _message(message)
        if cleaned is None:
            return None
        messages.append(cleaned)
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        return None
    example: dict[str, Any] = {"messages": messages}
    if isinstance(request.get("tools"), list) and request["tools"]:
        example["tools"] = request["tools"]
    if isinstance(request.get("parallel_tool_calls"), bool):
        example["parallel_tool_calls"] = request["parallel_tool_calls"]
    return example


BOOLEAN_CELLS = tuple(
    CSV_COLUMNS.index(c) for c in ("is_stream", "feedback_rating", "session_rating")
)
SCORES_CELL = CSV_COLUMNS.index("scores")


def _csv_cells(row: dict[str, Any]) -> list[Any]:
    """The row's CSV cells: text as stored, booleans as true/false, scores as JSON."""
    cells = [row[column] for column in CSV_COLUMNS]
    for index in BOOLEAN_CELLS:
        if cells[index] is not None:
            cells[index] = "true" if cells[index] else "false"
    cells[SCORES_CELL] = orjson.dumps(cells[SCORES_CELL]).decode()
    return cells


def csv_chunk(rows: Sequence[dict[str, Any]], header: bool = False) -> bytes:
    """CSV lines (None as an empty cell) for `rows`, after the header when asked."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_cells(row) for row in rows)
    return buffer.getvalue().encode()


Lines = Callable[[Sequence[dict[str, Any]], ExportCounts], bytes]


def _jsonl(shape: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Lines:
    """A writer of one JSON line per row that `shape` keeps."""

    def lines(rows: Sequence[dict[str, Any]], counts: ExportCounts) -> bytes:
        out = []
        for row in rows:
            shaped = shape(row)
            if shaped is not None:
                out.append(orjson.dumps(shaped))
        counts.written += len(out)
        return b"".join(line + b"\n" for line in out)

    return lines


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return present(row, row["scores"])


WRITERS: dict[str, Lines] = {"jsonl": _jsonl(_record), "openai-chat": _jsonl(chat_example)}


async def export_chunks(
    store: Store, condition: Condition, fmt: str, counts: ExportCounts, limit: int | None = None
) -> AsyncGenerator[bytes]:
    """The export in `fmt` as byte chunks (one per batch); `counts` follows along."""
    if fmt == "csv":
        yield csv_chunk([], header=True)
    select = SELECT_CHATS if fmt == "openai-chat" else SELECT_RECORD
    async for rows in read_rows(store, condition, limit, select):
        counts.rows += len(rows)
        if fmt == "csv":
            counts.written += len(rows)
            yield csv_chunk(rows)
        else:
            yield WRITERS[fmt](rows, counts)
