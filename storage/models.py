"""The logged row and the small value helpers the stores share (JSON, time, URLs)."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

OUTCOMES = (
    "ok",
    "upstream_error",
    "timeout",
    "upstream_unreachable",
    "client_cancelled",
    "stream_incomplete",
    "rejected",
    "rate_limited",
)


class Unchanged(enum.Enum):
    """A field an upsert leaves as it is (the call did not send it); None means cleared."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def json_or_text(text: str | None) -> Any:
    """A stored body parsed as JSON, or the text itself when it is not JSON."""
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


# Seconds since the epoch of 9999-12-31T23:59:59 UTC: utc_iso's own formatting covers 0 to this.
_LAST_SECOND = 253_402_300_799
# utc_iso's last second and its text, as one tuple so threads never see one without the other:
# the log writer formats many times within one second.
_second: list[tuple[int, str]] = [(-1, "")]


def utc_iso(ts: float) -> str:
    """Fixed-width UTC timestamp; sorts lexicographically in time order.

    The same text as datetime.fromtimestamp(ts, UTC) formatted to milliseconds (microseconds
    rounded half to even as datetime rounds them, then cut), in under a quarter of its time.
    """
    whole = math.floor(ts)
    micros = round((ts - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    if not 0 <= whole <= _LAST_SECOND:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    second, text = _second[0]
    if second != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second[0] = (whole, text)
    return f"{text}.{micros // 1000:03d}Z"


def redact(db: str) -> str:
    """The `--db` value with any password in a URL replaced, safe to print and log."""
    parts = urlsplit(db)
    if not parts.scheme or parts.password is None:
        return db
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@dataclass(slots=True)
class Row:
    """One logged exchange, as stored in the `requests` table."""

    id: str
    created_at: str
    method: str
    path: str
    query: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    model: str | None = None
    status: int | None = None
    outcome: str = "ok"
    is_stream: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    finish_reason: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    request_body: str | None = None
    response_body: str | None = None
    request_bytes: int | None = None
    response_bytes: int | None = None
    request_headers: str | None = None
    upstream_request_id: str | None = None
    error: str | None = None
    cache_hit: bool = False
    cache_source_id: str | None = None
    saved_cost_usd: float | None = None
    saved_prompt_tokens: int | None = None
    saved_completion_tokens: int | None = None
    attempts: int | None = None
    attempt_log: str | None = None
    fallback_index: int | None = None
    upstream_target: str | None = None
    # A JSON list of what was wrong with the call's logging headers, or NULL.
    warnings: str | None = None
    # The first words of the prompt and of the answer (proxy.gateway.previews), for lists.
    prompt_preview: str | None = None
    answer_preview: str | None = None
    # A digest of the request body (proxy.gateway.exchange.body_hash): a reused id with a
    # different one is a different call, and the earlier exchange moves to request_history.
    request_hash: str | None = None


# Column order used by every INSERT; `properties` is stored as JSON text here and also
# row-per-property in `request_properties` for filtering.
ROW_COLUMNS: tuple[str, ...] = tuple(Row.__dataclass_fields__)
