"""One proxied exchange as the handler saw it, and its conversion to a stored Row.

The handler collects bytes and timings, at most `capture_bytes` of each body; a stream longer
than that is folded as it arrives (linear, a chunk at a time). Parsing the rest (JSON, SSE,
usage, cost) happens here, in the writer, on bodies no larger than that bound.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.gateway import previews, sse
from proxy.gateway.headers import HeliconeOptions
from storage.models import Row, utc_iso

# What is kept of each body for the log unless recorder.max_body_bytes says otherwise.
CAPTURE_BYTES = 4 * 1024 * 1024
TEXT_TYPES = ("json", "text/", "x-www-form-urlencoded", "event-stream", "xml")

PriceFn = Callable[[str | None, sse.Summary], float | None]


@dataclass(slots=True)
class Exchange:
    """What one forwarded call produced; filled in by the handler as the call runs."""

    id: str
    started_at: float
    method: str
    path: str
    query: str | None = None
    # The Helicone-* headers as parsed; None for a request refused before they were read.
    helicone: HeliconeOptions | None = None
    request_headers: dict[str, str] = field(default_factory=dict)
    request_content_type: str = ""
    request_body: bytes | None = None
    response_content_type: str = ""
    response_chunks: list[bytes] = field(default_factory=list)
    response_size: int = 0  # every response byte the client got, kept or not
    capture_bytes: int = CAPTURE_BYTES
    stream: sse.StreamAssembler | None = None
    is_stream: bool = False
    status: int | None = None
    outcome: str = "ok"
    latency_ms: float | None = None
    ttft_ms: float | None = None
    upstream_request_id: str | None = None
    error: str | None = None
    cache_hit: bool = False
    cache_source_id: str | None = None
    # One entry per upstream attempt: target index, status (None: no answer), ms, wait_ms.
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    fallback_index: int | None = None
    upstream_target: str | None = None
    # What was wrong with the call's logging headers (stored on the row, sent back to the client).
    warnings: list[str] = field(default_factory=list)

    @property
    def session_id(self) -> str | None:
        """The Helicone-Session-Id, which the recorder tracks while the exchange is pending."""
        return None if self.helicone is None else self.helicone.session_id

    @property
    def response_cut(self) -> bool:
        """True when part of the answer was not kept (it exceeded `capture_bytes`)."""
        return self.response_size > self.capture_bytes

    @property
    def captured_bytes(self) -> int:
        """Body bytes held for the log, which is what converting this exchange costs."""
        request = len(self.request_body) if self.request_body is not None else 0
        return min(request, self.capture_bytes) + min(self.response_size, self.capture_bytes)

    def capture(self, chunk: bytes) -> None:
        """Keep `chunk` for the log within `capture_bytes`.

        A stream whose bytes all fit is folded by to_row, in the writer. One that outgrows
        `capture_bytes` is folded here as it arrives from then on (its usage comes last, in
        bytes that are not kept), starting with the bytes kept so far.
        """
        kept = self.response_size
        self.response_size += len(chunk)
        if self.is_stream and self.stream is None and self.response_size > self.capture_bytes:
            self.stream = sse.StreamAssembler(self.capture_bytes)
            self.stream.feed(b"".join(self.response_chunks))
        if kept < self.capture_bytes:
            self.response_chunks.append(chunk[: self.capture_bytes - kept])
        if self.stream is not None:
            self.stream.feed(chunk)


def _truncated_note(kind: str, kept: int, size: int) -> str:
    return f"{kind} body truncated for the log: {kept} of {size} bytes kept"


def _note(row: Row, note: str) -> None:
    row.error = f"{row.error}; {note}" if row.error else note


def _utf8_prefix(data: bytes) -> bytes:
    """`data` without the incomplete UTF-8 sequence a cut may have left at its end."""
    for back in range(1, min(4, len(data)) + 1):
        lead = data[-back]
        if lead & 0xC0 != 0x80:  # the first byte of the last character
            needed = 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
            return data[:-back] if lead >= 0x80 and needed > back else data
    return data


@functools.lru_cache(maxsize=256)
def _is_text(content_type: str) -> bool:
    """True for a body stored as text: JSON, text, forms, SSE, XML, or no type at all."""
    lowered = content_type.lower()
    return not lowered or any(t in lowered for t in TEXT_TYPES)


def _as_text(data: bytes | None, content_type: str) -> str | None:
    """Body bytes as stored text; binary bodies (audio, images) are not stored."""
    if data is None or not _is_text(content_type):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def clean(text: str) -> str:
    """Text safe to store: undecodable bytes that arrived in headers become U+FFFD."""
    if text.isascii():  # a flag on the string: no encoding needed to know
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _headers_json(headers: dict[str, str]) -> str:
    """The logged headers as JSON; only headers orjson refuses (undecodable bytes) are cleaned."""
    try:
        return orjson.dumps(headers).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps({clean(k): clean(v) for k, v in headers.items()}).decode()


def body_hash(body: bytes | None) -> str | None:
    """A digest of the request body as received: tells an SDK's retry (same body) from a
    different call that reuses a Helicone-Request-Id."""
    return None if body is None else hashlib.blake2b(body, digest_size=16).hexdigest()


def fallback_row(ex: Exchange) -> Row:
    """The row for an exchange whose body could not be parsed: metadata and raw text only."""
    options = ex.helicone or HeliconeOptions(request_id=ex.id)
    return Row(
        id=ex.id,
        created_at=utc_iso(ex.started_at),
        method=ex.method,
        path=clean(ex.path),
        query=None if ex.query is None else clean(ex.query),
        status=ex.status,
        outcome=ex.outcome,
        is_stream=ex.is_stream,
        latency_ms=ex.latency_ms,
        ttft_ms=ex.ttft_ms,
        user_id=options.user_id,
        session_id=options.session_id,
        session_path=options.session_path,
        session_name=options.session_name,
        properties=options.properties,
        request_headers=_headers_json(ex.request_headers),
        upstream_request_id=ex.upstream_request_id,
        error=ex.error,
        cache_hit=ex.cache_hit,
        cache_source_id=ex.cache_source_id,
        attempts=len(ex.attempt_log) or None,
        attempt_log=orjson.dumps(ex.attempt_log).decode() if ex.attempt_log else None,
        fallback_index=ex.fallback_index,
        upstream_target=ex.upstream_target,
        warnings=orjson.dumps([clean(w) for w in ex.warnings]).decode() if ex.warnings else None,
        request_hash=body_hash(ex.request_body),
    )


def to_row(ex: Exchange, price: PriceFn | None = None) -> Row:
    """Parse bodies, assemble streams, read usage and model, price the call."""
    row = fallback_row(ex)
    cap = ex.capture_bytes
    request_body = ex.request_body
    row.request_bytes = len(request_body) if request_body is not None else None
    request_cut = request_body is not None and len(request_body) > cap
    if request_cut and request_body is not None:
        kept = _utf8_prefix(request_body[:cap])
        _note(row, _truncated_note("request", len(kept), len(request_body)))
        request_body = kept
    request_text = _as_text(request_body, ex.request_content_type)
    request_json = None if request_cut else _json(request_text)
    if isinstance(request_json, dict) and isinstance(request_json.get("model"), str):
        row.request_model = request_json["model"]
    raw = b"".join(ex.response_chunks)
    size = max(ex.response_size, len(raw))
    row.response_bytes = size
    response_cut = size > len(raw)
    if response_cut:
        raw = _utf8_prefix(raw)
    stream_done = True
    if ex.is_stream:
        assembled = ex.stream.result() if ex.stream is not None else sse.assemble(raw, cap)
        body: Any = assembled.body
        stream_done = assembled.done
        response_text = None if body is None else orjson.dumps(body).decode()
        if body is None and raw:
            response_text = _as_text(raw, ex.response_content_type)
        if assembled.truncated:
            _note(row, f"streamed text over {cap} bytes was not kept for the log")
        elif response_cut and body is None:
            _note(row, _truncated_note("response", len(raw), size))
        if assembled.malformed:
            _note(row, f"{assembled.malformed} malformed SSE event(s)")
    else:
        response_text = _as_text(raw, ex.response_content_type)
        body = None if response_cut else _json(response_text)
        if response_cut:
            _note(row, _truncated_note("response", len(raw), size))
    summary = sse.summarize(body)
    if summary.ignored:
        _note(row, f"usage ignored, not a token count: {', '.join(summary.ignored)}")
    if row.outcome == "ok" and not stream_done and not summary.finish_reason:
        row.outcome = "stream_incomplete"
    row.response_model = summary.model
    # `model` is what the caller asked for (OpenAI answers with a dated snapshot); the price
    # follows the model that answered.
    row.model = row.request_model or summary.model
    row.prompt_tokens = summary.prompt_tokens
    row.completion_tokens = summary.completion_tokens
    row.total_tokens = summary.total_tokens
    if row.total_tokens is None and None not in (summary.prompt_tokens, summary.completion_tokens):
        row.total_tokens = (summary.prompt_tokens or 0) + (summary.completion_tokens or 0)
    row.cached_tokens = summary.cached_tokens
    row.finish_reason = summary.finish_reason
    if price is not None:
        row.cost_usd = price(summary.model or row.request_model, summary)
    if ex.cache_hit:
        # Nothing went upstream: what the original call cost and used is kept apart.
        row.saved_cost_usd, row.cost_usd = row.cost_usd, 0.0
        row.saved_prompt_tokens, row.prompt_tokens = row.prompt_tokens, 0
        row.saved_completion_tokens, row.completion_tokens = row.completion_tokens, 0
        row.total_tokens, row.cached_tokens = 0, None
    options = ex.helicone
    row.request_body = None if options is not None and options.omit_request else request_text
    row.response_body = None if options is not None and options.omit_response else response_text
    # An omitted body leaves no preview either.
    if row.request_body is not None:
        row.prompt_preview = previews.prompt_preview(request_json)
    if row.response_body is not None:
        row.answer_preview = previews.answer_preview(body)
    return row
