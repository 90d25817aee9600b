"""Pure SSE parsing: assemble a streamed completion, its usage and finish reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
DONE = "[DONE]"
# Reasoning text some OpenAI-compatible upstreams stream next to `content`.
REASONING_FIELDS = ("reasoning_content", "reasoning")


def iter_events(raw: bytes) -> Iterator[str]:
    """Yield the `data` payload of each complete or trailing SSE event in `raw`."""
    for block in EVENT_END.split(raw):
        lines = [
            line[5:].removeprefix(" ")
            for line in block.decode("utf-8", "replace").splitlines()
            if line.startswith("data:")
        ]
        if lines:
            yield "\n".join(lines)


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


@dataclass(slots=True)
class Assembled:
    """A stream folded into the body a non-streamed call would have returned."""

    body: dict[str, Any] | None
    events: int
    done: bool
    malformed: int


def _merge_tool_calls(target: list[dict[str, Any]], deltas: list[Any]) -> None:
    for delta in deltas:
        if not isinstance(delta, dict):
            continue
        index = delta.get("index", len(target))
        while len(target) <= index:
            target.append(
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
            )
        call = target[index]
        if delta.get("id"):
            call["id"] = delta["id"]
        if delta.get("type"):
            call["type"] = delta["type"]
        function = delta.get("function") or {}
        if function.get("name"):
            call["function"]["name"] += function["name"]
        if function.get("arguments"):
            call["function"]["arguments"] += function["arguments"]


def _assemble_chat(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    first = chunks[0]
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for chunk in chunks:
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            slot = choices.setdefault(
                index,
                {
                    "index": index,
                    "message": {"role": "assistant", "content": None},
                    "finish_reason": None,
                },
            )
            delta = choice.get("delta") or {}
            message = slot["message"]
            if delta.get("role"):
                message["role"] = delta["role"]
            if delta.get("content") is not None:
                message["content"] = (message["content"] or "") + delta["content"]
            if delta.get("refusal") is not None:
                message["refusal"] = message.get("refusal", "") + delta["refusal"]
            for name in REASONING_FIELDS:
                if isinstance(delta.get(name), str):
                    message[name] = message.get(name, "") + delta[name]
            if delta.get("tool_calls"):
                _merge_tool_calls(message.setdefault("tool_calls", []), delta["tool_calls"])
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
    body: dict[str, Any] = {
        "id": first.get("id"),
        "object": "chat.completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [choices[i] for i in sorted(choices)],
        "usage": usage,
    }
    if first.get("system_fingerprint"):
        body["system_fingerprint"] = first["system_fingerprint"]
    return body


def _assemble_responses(events: list[dict[str, Any]]) -> dict[str, Any]:
    final: dict[str, Any] | None = None
    text: list[str] = []
    for event in events:
        kind = event.get("type", "")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = event.get("response")
        elif kind in ("response.created", "response.in_progress") and final is None:
            partial = event.get("response")
            if isinstance(partial, dict):
                final = dict(partial)
        elif kind == "response.output_text.delta":
            text.append(str(event.get("delta", "")))
    body: dict[str, Any] = dict(final) if isinstance(final, dict) else {"object": "response"}
    if not body.get("output") and text:
        body["output"] = [
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "".join(text)}],
            }
        ]
    return body


def assemble(raw: bytes) -> Assembled:
    """Fold an SSE stream (chat completions or the Responses API) into one body."""
    chunks: list[dict[str, Any]] = []
    done = False
    malformed = 0
    for data in iter_events(raw):
        if data.strip() == DONE:
            done = True
            continue
        parsed = _loads(data)
        if isinstance(parsed, dict):
            chunks.append(parsed)
        else:
            malformed += 1
    if not chunks:
        return Assembled(None, 0, done, malformed)
    if any(str(c.get("type", "")).startswith("response.") for c in chunks):
        body = _assemble_responses(chunks)
        done = done or body.get("status") in ("completed", "incomplete", "failed")
        return Assembled(body, len(chunks), done, malformed)
    return Assembled(_assemble_chat(chunks), len(chunks), done, malformed)


@dataclass(slots=True)
class Summary:
    """The indexed facts drawn from a response body."""

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def summarize(body: Any) -> Summary:
    """Model, token usage and finish reason of a chat, embeddings or Responses API body."""
    if not isinstance(body, dict):
        return Summary()
    summary = Summary(model=body["model"] if isinstance(body.get("model"), str) else None)
    usage = body.get("usage")
    if isinstance(usage, dict):
        prompt = _int(usage.get("prompt_tokens"))
        if prompt is None:
            prompt = _int(usage.get("input_tokens"))
        completion = _int(usage.get("completion_tokens"))
        if completion is None:
            completion = _int(usage.get("output_tokens"))
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        summary.prompt_tokens = prompt
        summary.completion_tokens = completion
        summary.total_tokens = _int(usage.get("total_tokens"))
        if isinstance(details, dict):
            summary.cached_tokens = _int(details.get("cached_tokens"))
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        summary.finish_reason = reason if isinstance(reason, str) else None
    elif isinstance(body.get("status"), str) and body.get("object") == "response":
        summary.finish_reason = body["status"]
    return summary


class UsageChunkFilter:
    """Drops the usage-only chunk from a stream whose client did not ask for it.

    Used only when relaylog itself added `stream_options.include_usage` upstream.
    """

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        out: list[bytes] = []
        pos = 0
        for match in EVENT_END.finditer(data):
            event = data[pos : match.end()]
            pos = match.end()
            if not self.is_usage_only(event):
                out.append(event)
        self._pending = data[pos:]
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest

    @staticmethod
    def is_usage_only(event: bytes) -> bool:
        if b'"usage"' not in event:
            return False
        for data in iter_events(event):
            parsed = _loads(data)
            if isinstance(parsed, dict) and parsed.get("choices") == [] and parsed.get("usage"):
                return True
        return False
