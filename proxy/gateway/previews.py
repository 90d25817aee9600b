"""The first words of a prompt and of an answer, kept on the row so lists never read bodies.

The prompt is the last user message of a chat (its text, or its text parts), or the `prompt` /
`input` of a completion, response or embedding; the answer is the first choice's text, or its
tool calls as `→ name(arguments)`, or a response's output text and function calls. Whitespace is
collapsed and the result cut to PREVIEW_CHARS characters.
"""

from __future__ import annotations

from typing import Any

PREVIEW_CHARS = 200
TEXT_PARTS = ("text", "input_text", "output_text")


def shorten(text: str) -> str | None:
    """`text` with whitespace collapsed, at most PREVIEW_CHARS long; None when empty."""
    collapsed = " ".join(text.split())
    if not collapsed:
        return None
    if len(collapsed) > PREVIEW_CHARS:
        return collapsed[: PREVIEW_CHARS - 1] + "…"
    return collapsed


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in TEXT_PARTS
            and isinstance(part.get("text"), str)
        ]
        return " ".join(parts)
    return ""


def _last_user(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role", "user") == "user":
            return _text(message.get("content"))
    return ""


def _strings(value: Any) -> str:
    """A `prompt` or `input` that is a string or a list of strings (token lists have no text)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if any(isinstance(item, dict) for item in value):
            return _last_user(value)
        return " ".join(item for item in value if isinstance(item, str))
    return ""


def prompt_preview(body: Any) -> str | None:
    """The preview of a request body (parsed JSON), or None."""
    if not isinstance(body, dict):
        return None
    messages = body.get("messages")
    if isinstance(messages, list):
        return shorten(_last_user(messages))
    for name in ("prompt", "input"):
        if name in body:
            return shorten(_strings(body[name]))
    return None


def _call(function: Any) -> str:
    if not isinstance(function, dict):
        return ""
    arguments = function.get("arguments")
    return f"→ {function.get('name')}({arguments if isinstance(arguments, str) else ''})"


def _choice(choice: Any) -> str:
    if not isinstance(choice, dict):
        return ""
    if isinstance(choice.get("text"), str):
        return str(choice["text"])
    message = choice.get("message")
    if not isinstance(message, dict):
        return ""
    text = _text(message.get("content"))
    calls = message.get("tool_calls")
    if not text and isinstance(calls, list):
        return ", ".join(_call(c.get("function")) for c in calls if isinstance(c, dict))
    return text


def _output(items: list[Any]) -> str:
    texts, calls = [], []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls.append(_call(item))
        elif item.get("type") == "message":
            texts.append(_text(item.get("content")))
    return " ".join(t for t in texts if t) or ", ".join(calls)


def answer_preview(body: Any) -> str | None:
    """The preview of a response body (parsed, or assembled from a stream), or None."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if isinstance(choices, list) and choices:
        return shorten(_choice(choices[0]))
    output = body.get("output")
    if isinstance(output, list):
        return shorten(_output(output))
    return None
