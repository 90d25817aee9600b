"""A cached answer replayed in the form the client asked for: SSE events or one JSON body."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.gateway import sse
from storage.cache import CacheEntry

DONE_EVENT = b"data: [DONE]\n\n"
# Message fields a chat chunk carries as text deltas, reasoning included.
TEXT_FIELDS = ("reasoning_content", "reasoning", "content", "refusal")


def split_events(raw: bytes) -> list[bytes]:
    """The SSE events of a stream, each with its own terminator, in order."""
    events, pos = [], 0
    for match in sse.EVENT_END.finditer(raw):
        events.append(raw[pos : match.end()])
        pos = match.end()
    if raw[pos:].strip():
        events.append(raw[pos:])
    return events


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def _usage_event(body: dict[str, Any] | None) -> bytes | None:
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
        return None
    return _event(
        {
            "id": body.get("id"),
            "object": "chat.completion.chunk",
            "created": body.get("created"),
            "model": body.get("model"),
            "choices": [],
            "usage": body["usage"],
        }
    )


def chat_events(body: Any, wants_usage: bool) -> list[bytes] | None:
    """The chunks a streamed call would have received for a chat completion body."""
    if not isinstance(body, dict) or body.get("object") != "chat.completion":
        return None
    base: dict[str, Any] = {
        "id": body.get("id"),
        "object": "chat.completion.chunk",
        "created": body.get("created"),
        "model": body.get("model"),
    }
    if body.get("system_fingerprint"):
        base["system_fingerprint"] = body["system_fingerprint"]
    extra: dict[str, Any] = {"usage": None} if wants_usage else {}

    def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> bytes:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        return _event({**base, "choices": [choice], **extra})

    events = []
    for choice in body.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        events.append(chunk(index, {"role": message.get("role", "assistant"), "content": ""}))
        for name in TEXT_FIELDS:
            if isinstance(message.get(name), str) and message[name]:
                events.append(chunk(index, {name: message[name]}))
        for n, call in enumerate(message.get("tool_calls") or []):
            if isinstance(call, dict):
                events.append(chunk(index, {"tool_calls": [{"index": n, **call}]}))
        events.append(chunk(index, {}, choice.get("finish_reason")))
    if wants_usage:
        usage = _usage_event(body)
        if usage is not None:
            events.append(usage)
    events.append(DONE_EVENT)
    return events


def as_events(entry: CacheEntry, wants_usage: bool) -> list[bytes] | None:
    """The entry as SSE events for a streaming client; None when it cannot be replayed so."""
    if not entry.is_stream:
        try:
            body = orjson.loads(entry.body)
        except orjson.JSONDecodeError:
            return None
        return chat_events(body, wants_usage)
    events = split_events(entry.body.encode())
    usage_only = [sse.UsageChunkFilter.is_usage_only(e) for e in events]
    if not wants_usage:
        return [e for e, drop in zip(events, usage_only, strict=True) if not drop]
    if any(usage_only):
        return events
    usage = _usage_event(sse.assemble(entry.body.encode()).body)
    if usage is None:
        return events
    done = next((i for i, e in enumerate(events) if b"[DONE]" in e), len(events))
    return [*events[:done], usage, *events[done:]]


def as_body(entry: CacheEntry) -> bytes | None:
    """The entry as the JSON body of a non-streamed call; None when it cannot be shown so."""
    if not entry.is_stream:
        return entry.body.encode()
    assembled = sse.assemble(entry.body.encode())
    return None if assembled.body is None else orjson.dumps(assembled.body)
