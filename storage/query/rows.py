"""Row presenters: one logged exchange as `relaylog show`, the API and the jsonl export give it.

`present` is the whole record (every column, feedback with its timestamps, scores, session
and its feedback); `helicone_row` is a query page's row under Helicone's field names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from storage.models import ROW_COLUMNS, Row, json_or_text

if TYPE_CHECKING:
    from storage.base import Store

# A request with its feedback and its session's feedback; `present` reads these columns.
SELECT_RECORD = (
    "SELECT r.*, f.rating AS feedback_rating, f.comment AS feedback_comment, "
    "f.created_at AS feedback_created_at, f.updated_at AS feedback_updated_at, "
    "sf.rating AS session_rating, sf.created_at AS session_created_at, "
    "sf.updated_at AS session_updated_at FROM requests r "
    "LEFT JOIN feedback f ON f.request_id = r.id "
    "LEFT JOIN session_feedback sf ON sf.session_id = r.session_id"
)
JSON_COLUMNS = ("request_body", "response_body", "request_headers", "attempt_log", "warnings")


async def scores_for(store: Store, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Each id's scores, by name."""
    out: dict[str, dict[str, float]] = {}
    rows = await store.fetch_in(
        "SELECT request_id, name, value FROM scores WHERE request_id IN ({ids}) ORDER BY name",
        ids,
    )
    for row in rows:
        out.setdefault(row["request_id"], {})[row["name"]] = float(row["value"])
    return out


def _session(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if row["session_id"] is None:
        return None
    rating = row["session_rating"]
    return {
        "id": row["session_id"],
        "path": row["session_path"],
        "name": row["session_name"],
        "feedback": None
        if rating is None
        else {
            "rating": bool(rating),
            "created_at": row["session_created_at"],
            "updated_at": row["session_updated_at"],
        },
    }


def present(row: Mapping[str, Any], scores: Mapping[str, float]) -> dict[str, Any]:
    """A row read with SELECT_RECORD as one JSON object: JSON columns parsed, booleans typed."""
    out = {column: row[column] for column in ROW_COLUMNS}
    out["is_stream"] = bool(out["is_stream"])
    out["cache_hit"] = bool(out["cache_hit"])
    out["properties"] = orjson.loads(out["properties"] or "{}")
    for column in JSON_COLUMNS:
        out[column] = json_or_text(out[column])
    rating = row["feedback_rating"]
    out["feedback"] = (
        None
        if rating is None
        else {
            "rating": bool(rating),
            "comment": row["feedback_comment"],
            "created_at": row["feedback_created_at"],
            "updated_at": row["feedback_updated_at"],
        }
    )
    out["scores"] = dict(scores)
    out["session"] = _session(row)
    return out


def present_unstored(row: Row) -> dict[str, Any]:
    """A row not stored yet (an exchange still being served) in the shape `present` gives."""
    record: dict[str, Any] = {column: getattr(row, column) for column in ROW_COLUMNS}
    record["properties"] = orjson.dumps(row.properties).decode()
    record.update(feedback_rating=None, session_rating=None)
    return present(record, {})


def _rating(value: Any) -> bool | None:
    return None if value is None else bool(value)


def helicone_row(row: Mapping[str, Any], scores: dict[str, float]) -> dict[str, Any]:
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
        "session_feedback_rating": _rating(row.get("session_rating")),
        "scores": scores,
        "upstream_request_id": row["upstream_request_id"],
        "error": row["error"],
        "warnings": json_or_text(row["warnings"]),
        # The first words of the prompt and the answer, computed when the row was written.
        "prompt_preview": row.get("prompt_preview"),
        "answer_preview": row.get("answer_preview"),
    }
