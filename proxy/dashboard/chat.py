"""A logged exchange as a conversation: messages with text, images (as links), tool calls and
results; the assembled answer; the call's parameters. Chat completions and the Responses API.

Everything here is plain data for detail.html, which escapes it; nothing is markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Request fields shown as the conversation itself, not as parameters.
CONVERSATION_FIELDS = frozenset({"messages", "input", "instructions", "tools", "prompt"})
RAW_LIMIT = 256 * 1024


@dataclass(slots=True)
class Part:
    """One piece of a message: text, an image link, a tool call or a tool's result."""

    kind: str  # "text" | "image" | "tool_call" | "tool_result" | "other"
    text: str = ""
    url: str = ""
    name: str = ""


@dataclass(slots=True)
class Message:
    role: str
    parts: list[Part] = field(default_factory=list)


@dataclass(slots=True)
class Conversation:
    messages: list[Message]
    answer: list[Message]
    parameters: list[tuple[str, str]]
    tools: list[str]
    raw_request: str
    raw_response: str


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _raw(value: Any) -> str:
    text = "" if value is None else _json(value)
    if len(text) > RAW_LIMIT:
        more = len(text) - RAW_LIMIT
        return f"{text[:RAW_LIMIT]}\n… {more:,} more characters: GET /v1/request/ID has them all"
    return text


def _link(url: Any) -> str:
    """An image URL for a link: http(s) kept; a data: URL is summarised, never a link."""
    if not isinstance(url, str):
        return ""
    return url if url.startswith(("http://", "https://")) else ""


def _content_parts(content: Any) -> list[Part]:
    """Chat or Responses content (a string or a list of typed parts) as parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [Part("text", content)]
    if not isinstance(content, list):
        return [Part("other", _json(content))]
    parts = []
    for item in content:
        if not isinstance(item, dict):
            parts.append(Part("text", str(item)))
            continue
        kind = item.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(item.get("text"), str):
            parts.append(Part("text", item["text"]))
        elif kind in ("image_url", "input_image"):
            image = item.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            label = url[:60] + "…" if isinstance(url, str) and len(url) > 60 else str(url)
            parts.append(Part("image", label, url=_link(url)))
        elif kind == "refusal":
            parts.append(Part("text", str(item.get("refusal", ""))))
        else:
            parts.append(Part("other", _json(item)))
    return parts


def _arguments(arguments: Any) -> str:
    """A tool call's arguments, indented when they are JSON text (as OpenAI sends them)."""
    if isinstance(arguments, str):
        try:
            return _json(orjson.loads(arguments))
        except orjson.JSONDecodeError:
            return arguments
    return _json(arguments)


def _tool_calls(calls: Any) -> list[Part]:
    parts = []
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            name = str(function.get("name", ""))
            parts.append(Part("tool_call", _arguments(function.get("arguments")), name=name))
    return parts


def _chat_message(message: Any) -> Message:
    if not isinstance(message, dict):
        return Message("unknown", [Part("other", _json(message))])
    role = str(message.get("role", "unknown"))
    if role == "tool":
        parts = [Part("tool_result", p.text, name=str(message.get("tool_call_id", "")))
                 for p in _content_parts(message.get("content"))]  # fmt: skip
        return Message(role, parts)
    return Message(role, [*_content_parts(message.get("content")),
                          *_tool_calls(message.get("tool_calls"))])  # fmt: skip


def _responses_item(item: Any) -> Message:
    if isinstance(item, dict) and item.get("type") == "function_call":
        call = Part("tool_call", _arguments(item.get("arguments")), name=str(item.get("name", "")))
        return Message("assistant", [call])
    if isinstance(item, dict) and item.get("type") == "function_call_output":
        result = Part("tool_result", _json(item.get("output")), name=str(item.get("call_id", "")))
        return Message("tool", [result])
    return _chat_message(item)


def _messages(body: Any) -> list[Message]:
    if not isinstance(body, dict):
        return [Message("request", [Part("other", _json(body))])] if body else []
    out = []
    if isinstance(body.get("instructions"), str):
        out.append(Message("system", [Part("text", body["instructions"])]))
    if isinstance(body.get("messages"), list):
        out += [_chat_message(m) for m in body["messages"]]
    inputs = body.get("input", body.get("prompt"))
    if isinstance(inputs, str):
        out.append(Message("user", [Part("text", inputs)]))
    elif isinstance(inputs, list):
        for item in inputs:
            is_item = isinstance(item, dict)
            out.append(
                _responses_item(item) if is_item else Message("user", [Part("text", str(item))])
            )
    return out


def _answer(body: Any) -> list[Message]:
    if not isinstance(body, dict):
        return [Message("response", [Part("other", _json(body))])] if body else []
    out = []
    for choice in body.get("choices") or []:
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            out.append(_chat_message(choice["message"]))
        elif isinstance(choice, dict) and isinstance(choice.get("text"), str):
            out.append(Message("assistant", [Part("text", choice["text"])]))
    for item in body.get("output") or []:
        if isinstance(item, dict) and item.get("type") in ("message", "function_call", None):
            out.append(_responses_item({"role": "assistant", **item}))
    if not out and isinstance(body.get("error"), dict):
        out.append(Message("error", [Part("text", str(body["error"].get("message", "")))]))
    return out


def conversation(record: dict[str, Any]) -> Conversation:
    """The record's request and response bodies as messages, answer, parameters and tools."""
    body, response = record.get("request_body"), record.get("response_body")
    params = []
    tools = []
    if isinstance(body, dict):
        params = [(k, _json(v)) for k, v in body.items() if k not in CONVERSATION_FIELDS]
        for tool in body.get("tools") or []:
            function = tool.get("function", tool) if isinstance(tool, dict) else {}
            if isinstance(function, dict):
                tools.append(str(function.get("name", "")))
    return Conversation(
        messages=_messages(body),
        answer=_answer(response),
        parameters=params,
        tools=tools,
        raw_request=_raw(body),
        raw_response=_raw(response),
    )
