"""Pure SSE parsing: assemble a streamed completion, its usage and finish reason."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

# One event's end in the common framings (replay splits stored streams on it).
EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
DONE = "[DONE]"
# Reasoning text some OpenAI-compatible upstreams stream next to `content`.
REASONING_FIELDS = ("reasoning_content", "reasoning")
BOM = b"\xef\xbb\xbf"
BLANK = frozenset({b"\n", b"\r\n", b"\r"})
# More choices or tool calls than this in one answer are malformed (OpenAI allows n <= 128).
MAX_INDEX = 1024
# Token counts above this (a 32-bit column's range) or below zero are not believed.
MAX_TOKENS = 2**31 - 1
# An event held back by the usage filter: a usage-only chunk is far smaller than this.
USAGE_EVENT_MAX = 64 * 1024


class Lines:
    """Split a byte stream into complete lines (ending in \\n, \\r\\n or \\r), in linear time.

    A line that has not ended yet is held as pieces and joined once, so a long line arriving in
    many chunks costs its length, not its length squared. A leading BOM is dropped.
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self.pending = 0  # bytes of the line not ended yet
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._started:
            head = b"".join([*self._pieces, chunk]) if self._pieces else chunk
            if len(head) < len(BOM) and BOM.startswith(head):
                self._pieces, self.pending = [head], len(head)
                return []
            self._pieces, self.pending, self._started = [], 0, True
            chunk = head.removeprefix(BOM)
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._pieces.append(chunk)
                self.pending += len(chunk)
            return []
        data = b"".join([*self._pieces, chunk]) if self._pieces else chunk
        self._pieces, self.pending = [], 0
        lines = data.splitlines(keepends=True)
        last = lines[-1]
        # An unterminated last line, or one ending in \r that a \n may still follow.
        if not last.endswith(b"\n"):
            lines.pop()
            self._pieces.append(last)
            self.pending = len(last)
        return lines

    def take(self) -> bytes:
        """The bytes of the line not ended yet, removed from the splitter."""
        rest, self._pieces, self.pending = b"".join(self._pieces), [], 0
        return rest


def _event_data(lines: list[bytes]) -> str | None:
    """The `data` payload of one event's lines, or None when it has no data field."""
    data = [
        line[5:].removeprefix(b" ").rstrip(b"\r\n") for line in lines if line.startswith(b"data:")
    ]
    if not data:
        return None
    return b"\n".join(data).decode("utf-8", "replace")


def iter_events(raw: bytes) -> Iterator[str]:
    """Yield the `data` payload of each complete or trailing SSE event in `raw`."""
    splitter = Lines()
    event: list[bytes] = []
    for line in [*splitter.feed(raw), splitter.take()]:
        if line in BLANK or not line:
            payload = _event_data(event)
            event = []
            if payload is not None:
                yield payload
        else:
            event.append(line)
    payload = _event_data(event)
    if payload is not None:
        yield payload


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
    truncated: bool = False


def _index(value: Any, default: int) -> int | None:
    """A choice or tool-call index, or None when it is not a small non-negative integer."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_INDEX:
        return None
    return value


@dataclass(slots=True)
class _ToolCall:
    id: Any = None
    type: Any = "function"
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Choice:
    index: int
    role: Any = "assistant"
    content: list[str] | None = None
    refusal: list[str] | None = None
    reasoning: dict[str, list[str]] = field(default_factory=dict)
    tool_calls: dict[int, _ToolCall] | None = None
    finish_reason: Any = None

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": None if self.content is None else "".join(self.content),
        }
        if self.refusal is not None:
            message["refusal"] = "".join(self.refusal)
        for name, parts in self.reasoning.items():
            message[name] = "".join(parts)
        if self.tool_calls is not None:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": call.type,
                    "function": {"name": "".join(call.name), "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self.tool_calls.items())
            ]
        return {"index": self.index, "message": message, "finish_reason": self.finish_reason}


class StreamAssembler:
    """Fold a chat-completions or Responses API stream into one body as its bytes arrive.

    Each chunk costs time in proportion to its size, and text is kept as parts joined once, so
    assembly is linear and can run in the tee without holding the event loop. At most
    `max_bytes` of text (and of any one event) is kept; beyond it the result is `truncated`.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lines = Lines()
        self._event: list[bytes] = []
        self._event_bytes = 0
        self._kept = 0
        self.truncated = False
        self.events = 0
        self.malformed = 0
        self.done = False
        self._first: dict[str, Any] | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: Any = None
        self._responses = False
        self._final: dict[str, Any] | None = None
        self._text: list[str] = []

    def feed(self, chunk: bytes) -> None:
        for line in self._lines.feed(chunk):
            self._line(line)
        if self._lines.pending + self._event_bytes > self.max_bytes:
            self._lines.take()
            self._drop_event()

    def _drop_event(self) -> None:
        self.truncated = True
        self.malformed += 1
        self._event, self._event_bytes = [], 0

    def _line(self, line: bytes) -> None:
        if line in BLANK:
            self._dispatch()
            return
        if line.startswith(b"data:"):
            self._event.append(line)
            self._event_bytes += len(line)
            if self._event_bytes > self.max_bytes:
                self._drop_event()

    def _dispatch(self) -> None:
        payload = _event_data(self._event)
        self._event, self._event_bytes = [], 0
        if payload is None:
            return
        if payload.strip() == DONE:
            self.done = True
            return
        parsed = _loads(payload)
        if not isinstance(parsed, dict):
            self.malformed += 1
            return
        self.events += 1
        if self._first is None:
            self._first = parsed
        if str(parsed.get("type", "")).startswith("response."):
            self._responses = True
            self._response_event(parsed)
        else:
            self._chat_chunk(parsed)

    def _keep(self, parts: list[str], text: Any) -> None:
        if not isinstance(text, str):
            text = str(text)
        self._kept += len(text)
        if self._kept > self.max_bytes:
            self.truncated = True
            return
        parts.append(text)

    def _chat_chunk(self, chunk: dict[str, Any]) -> None:
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            index = _index(choice.get("index"), 0)
            if index is None:
                self.malformed += 1
                continue
            slot = self._choices.get(index)
            if slot is None:
                slot = self._choices[index] = _Choice(index)
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(slot, delta)
            if choice.get("finish_reason"):
                slot.finish_reason = choice["finish_reason"]

    def _delta(self, slot: _Choice, delta: dict[str, Any]) -> None:
        if delta.get("role"):
            slot.role = delta["role"]
        if delta.get("content") is not None:
            slot.content = [] if slot.content is None else slot.content
            self._keep(slot.content, delta["content"])
        if delta.get("refusal") is not None:
            slot.refusal = [] if slot.refusal is None else slot.refusal
            self._keep(slot.refusal, delta["refusal"])
        for name in REASONING_FIELDS:
            if isinstance(delta.get(name), str):
                self._keep(slot.reasoning.setdefault(name, []), delta[name])
        calls = delta.get("tool_calls")
        if calls and isinstance(calls, list):
            slot.tool_calls = {} if slot.tool_calls is None else slot.tool_calls
            for call in calls:
                if isinstance(call, dict):
                    self._tool_call(slot.tool_calls, call)

    def _tool_call(self, calls: dict[int, _ToolCall], delta: dict[str, Any]) -> None:
        index = _index(delta.get("index"), len(calls))
        if index is None:
            self.malformed += 1
            return
        call = calls.get(index)
        if call is None:
            call = calls[index] = _ToolCall()
        if delta.get("id"):
            call.id = delta["id"]
        if delta.get("type"):
            call.type = delta["type"]
        function = delta.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                self._keep(call.name, function["name"])
            if function.get("arguments"):
                self._keep(call.arguments, function["arguments"])

    def _response_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type", "")
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            final = event.get("response")
            self._final = final if isinstance(final, dict) else self._final
        elif kind in ("response.created", "response.in_progress") and self._final is None:
            partial = event.get("response")
            if isinstance(partial, dict):
                self._final = dict(partial)
        elif kind == "response.output_text.delta":
            self._keep(self._text, event.get("delta", ""))

    def result(self) -> Assembled:
        """The folded body so far (a stream cut midway keeps what arrived)."""
        rest = self._lines.take()
        if rest:
            self._line(rest)
        self._dispatch()
        if self._first is None:
            return Assembled(None, 0, self.done, self.malformed, self.truncated)
        if self._responses:
            body = self._responses_body()
            done = self.done or body.get("status") in ("completed", "incomplete", "failed")
            return Assembled(body, self.events, done, self.malformed, self.truncated)
        return Assembled(self._chat_body(), self.events, self.done, self.malformed, self.truncated)

    def _chat_body(self) -> dict[str, Any]:
        first = self._first or {}
        body: dict[str, Any] = {
            "id": first.get("id"),
            "object": "chat.completion",
            "created": first.get("created"),
            "model": first.get("model"),
            "choices": [self._choices[i].body() for i in sorted(self._choices)],
            "usage": self._usage,
        }
        if first.get("system_fingerprint"):
            body["system_fingerprint"] = first["system_fingerprint"]
        return body

    def _responses_body(self) -> dict[str, Any]:
        final = self._final
        body: dict[str, Any] = dict(final) if isinstance(final, dict) else {"object": "response"}
        if not body.get("output") and self._text:
            body["output"] = [
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "".join(self._text)}],
                }
            ]
        return body


def assemble(raw: bytes, max_bytes: int | None = None) -> Assembled:
    """Fold a whole SSE stream (chat completions or the Responses API) into one body."""
    assembler = StreamAssembler(len(raw) + 1 if max_bytes is None else max_bytes)
    assembler.feed(raw)
    return assembler.result()


@dataclass(slots=True)
class Summary:
    """The indexed facts drawn from a response body."""

    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    # Usage fields that were present but not believable (negative, huge, not integers).
    ignored: list[str] = field(default_factory=list)


def _int(value: Any, summary: Summary, name: str) -> int | None:
    """A token count as the upstream sent it, or None (noted) when it cannot be one."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    summary.ignored.append(f"{name}={str(value)[:40]}")
    return None


def summarize(body: Any) -> Summary:
    """Model, token usage and finish reason of a chat, embeddings or Responses API body."""
    if not isinstance(body, dict):
        return Summary()
    summary = Summary(model=body["model"] if isinstance(body.get("model"), str) else None)
    usage = body.get("usage")
    if isinstance(usage, dict):
        prompt = _int(usage.get("prompt_tokens"), summary, "prompt_tokens")
        if prompt is None:
            prompt = _int(usage.get("input_tokens"), summary, "input_tokens")
        completion = _int(usage.get("completion_tokens"), summary, "completion_tokens")
        if completion is None:
            completion = _int(usage.get("output_tokens"), summary, "output_tokens")
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details")
        summary.prompt_tokens = prompt
        summary.completion_tokens = completion
        summary.total_tokens = _int(usage.get("total_tokens"), summary, "total_tokens")
        if isinstance(details, dict):
            summary.cached_tokens = _int(details.get("cached_tokens"), summary, "cached_tokens")
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        summary.finish_reason = reason if isinstance(reason, str) else None
    elif isinstance(body.get("status"), str) and body.get("object") == "response":
        summary.finish_reason = body["status"]
    return summary


class UsageChunkFilter:
    """Drops the usage-only chunk from a stream whose client did not ask for it.

    Used only when relaylog itself added `stream_options.include_usage` upstream. Bytes pass
    through unchanged; only an event small enough to be a usage chunk is held until it ends.
    """

    def __init__(self) -> None:
        self._lines = Lines()
        self._event: list[bytes] = []
        self._size = 0
        self._passing = False  # the current event is too large to be the usage chunk

    def feed(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        for line in self._lines.feed(chunk):
            self._event.append(line)
            self._size += len(line)
            if line in BLANK:
                event = b"".join(self._event)
                if self._passing or not self.is_usage_only(event):
                    out.append(event)
                self._event, self._size, self._passing = [], 0, False
        if self._size + self._lines.pending > USAGE_EVENT_MAX:
            out.extend(self._event)
            out.append(self._lines.take())
            self._event, self._size, self._passing = [], 0, True
        return b"".join(out)

    def flush(self) -> bytes:
        rest = b"".join(self._event) + self._lines.take()
        self._event, self._size, self._passing = [], 0, False
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
