"""The built-in OpenAI-compatible sandbox upstream: deterministic replies and fault injection.

Reply text is derived from the last user message ("Echo: <text>"), so callers can assert on it.
Faults are chosen per request with one header, e.g.
`Sandbox-Fault: status=503, delay_ms=200, chunk_delay_ms=20, cut_after=3, retry_after=1`.
`times=N` applies the fault only to the first N requests carrying that exact header value, so a
retry of the same call can succeed (`status=429, times=1, id=abc` fails once, then answers).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from proxy.errors import BadBody

FAULT_HEADER = "Sandbox-Fault"
MAX_FAULTS_SEEN = 10_000
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small")


@dataclass(slots=True)
class Fault:
    status: int | None = None
    delay_ms: int = 0
    chunk_delay_ms: int = 0
    cut_after: int | None = None
    retry_after: str | None = None
    raw_text: str | None = None
    times: int | None = None


FAULT = web.RequestKey("fault", Fault)
# How many requests each `times=`-bounded fault header has been applied to.
FAULTS_SEEN = web.AppKey("faults_seen", dict[str, int])


def parse_fault(header: str | None) -> Fault:
    """Parse `Sandbox-Fault`; unknown keys are a 400 so typos do not pass silently."""
    fault = Fault()
    if not header:
        return fault
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        key, value = key.strip(), value.strip()
        try:
            if key == "status":
                fault.status = int(value)
            elif key == "delay_ms":
                fault.delay_ms = int(value)
            elif key == "chunk_delay_ms":
                fault.chunk_delay_ms = int(value)
            elif key == "cut_after":
                fault.cut_after = int(value)
            elif key == "retry_after":
                fault.retry_after = value
            elif key == "raw":
                fault.raw_text = value
            elif key == "times":
                fault.times = int(value)
            elif key == "id":
                pass
            else:
                raise ValueError(key)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"bad {FAULT_HEADER} item {item.strip()!r}") from exc
    return fault


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
    return ""


def count_tokens(text: str) -> int:
    """A deterministic stand-in for a tokenizer: roughly one token per word."""
    return max(1, len(text.split()))


def reply_for(text: str) -> str:
    return f"Echo: {text}" if text else "Echo: (empty)"


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def _prompt_tokens(messages: Any) -> int:
    if isinstance(messages, list):
        return sum(
            count_tokens(_text_of(m.get("content"))) + 3 for m in messages if isinstance(m, dict)
        )
    return count_tokens(_text_of(messages))


def _tool_call(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return None
    choice = body.get("tool_choice")
    wants = choice == "required" or isinstance(choice, dict) or text.startswith("tool:")
    if not wants or choice == "none":
        return None
    name = ""
    if isinstance(choice, dict):
        name = str((choice.get("function") or {}).get("name", ""))
    if not name and isinstance(tools[0], dict):
        name = str((tools[0].get("function") or {}).get("name", "tool"))
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    arguments = orjson.dumps({"input": text.removeprefix("tool:").strip()}).decode()
    return {
        "id": f"call_{digest}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def _error(status: int, fault: Fault) -> web.Response:
    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status, "sandbox_fault")
    body = {
        "error": {"message": f"sandbox fault {status}", "type": kind, "param": None, "code": kind}
    }
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _bad_request(message: str) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    return web.Response(body=orjson.dumps(body), status=400, content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadBody("We could not parse the JSON body of your request.") from exc
    if not isinstance(body, dict):
        raise BadBody("The body of your request must be a JSON object.")
    return body


async def _stream(request: web.Request, events: list[bytes], fault: Fault) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "x-request-id": "req_sandbox",
        }
    )
    await response.prepare(request)
    for index, event in enumerate(events):
        if fault.cut_after is not None and index >= fault.cut_after:
            assert request.transport is not None
            request.transport.close()
            return response
        if fault.chunk_delay_ms and index:
            await asyncio.sleep(fault.chunk_delay_ms / 1000)
        await response.write(event)
    await response.write_eof()
    return response


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def chat_completions(request: web.Request) -> web.StreamResponse:
    fault: Fault = request[FAULT]
    body = await _json_body(request)
    model = str(body.get("model") or "gpt-4o-mini")
    text = last_user_text(body.get("messages"))
    reply = reply_for(text)
    prompt_tokens = _prompt_tokens(body.get("messages"))
    completion_tokens = count_tokens(reply)
    tool_call = _tool_call(body, text)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
    }
    completion_id = "chatcmpl-" + hashlib.sha256(reply.encode()).hexdigest()[:20]
    created = int(time.time())
    finish = "tool_calls" if tool_call else "stop"
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": None if tool_call else reply}
        if tool_call:
            message["tool_calls"] = [tool_call]
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                ],
                "usage": usage,
            },
            dumps=lambda o: orjson.dumps(o).decode(),
            headers={"x-request-id": "req_sandbox"},
        )
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], reason: str | None = None) -> bytes:
        payload = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": reason}]}
        if include_usage:
            payload["usage"] = None
        return _sse(payload)

    events = [chunk({"role": "assistant", "content": ""})]
    if tool_call:
        args = tool_call["function"]["arguments"]
        head = {**tool_call, "function": {"name": tool_call["function"]["name"], "arguments": ""}}
        events.append(chunk({"tool_calls": [{"index": 0, **head}]}))
        for start in range(0, len(args), 8):
            piece = {"index": 0, "function": {"arguments": args[start : start + 8]}}
            events.append(chunk({"tool_calls": [piece]}))
    else:
        events.extend(chunk({"content": word}) for word in _words(reply))
    events.append(chunk({}, finish))
    if include_usage:
        events.append(_sse({**base, "choices": [], "usage": usage}))
    events.append(b"data: [DONE]\n\n")
    return await _stream(request, events, fault)


def _embedding(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dims)]


async def embeddings(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    inputs = body.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    requested = body.get("dimensions")
    dims = requested if isinstance(requested, int) and 0 < requested <= 4096 else 16
    tokens = sum(count_tokens(str(i)) for i in items)
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _embedding(str(item), dims)}
                for i, item in enumerate(items)
            ],
            "model": body.get("model", "text-embedding-3-small"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def models(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "sandbox"}
                for m in MODELS
            ],
        }
    )


async def responses(request: web.Request) -> web.StreamResponse:
    fault: Fault = request[FAULT]
    body = await _json_body(request)
    model = str(body.get("model") or "gpt-4o-mini")
    text = last_user_text(body.get("input"))
    reply = reply_for(text)
    input_tokens = _prompt_tokens(body.get("input"))
    output_tokens = count_tokens(reply)
    response_id = "resp_" + hashlib.sha256(reply.encode()).hexdigest()[:20]
    message_id = "msg_" + response_id[5:]
    created = int(time.time())
    part: dict[str, Any] = {"type": "output_text", "text": reply, "annotations": []}
    message: dict[str, Any] = {
        "type": "message",
        "id": message_id,
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }
    full = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "completed",
        "model": model,
        "output": [message],
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    if not body.get("stream"):
        return web.json_response(full, dumps=lambda o: orjson.dumps(o).decode())
    pending = {**full, "status": "in_progress", "output": [], "usage": None}
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": next(seq), **fields}
        return b"event: " + kind.encode() + b"\n" + _sse(payload)

    events = [
        event("response.created", response=pending),
        event("response.in_progress", response=pending),
        event(
            "response.output_item.added",
            output_index=0,
            item={**message, "status": "in_progress", "content": []},
        ),
        event(
            "response.content_part.added",
            item_id=message_id,
            output_index=0,
            content_index=0,
            part={**part, "text": ""},
        ),
    ]
    events.extend(
        event(
            "response.output_text.delta",
            item_id=message_id,
            output_index=0,
            content_index=0,
            delta=w,
        )
        for w in _words(reply)
    )
    events.append(
        event(
            "response.output_text.done",
            item_id=message_id,
            output_index=0,
            content_index=0,
            text=reply,
        )
    )
    events.append(
        event(
            "response.content_part.done",
            item_id=message_id,
            output_index=0,
            content_index=0,
            part=part,
        )
    )
    events.append(event("response.output_item.done", output_index=0, item=message))
    events.append(event("response.completed", response=full))
    return await _stream(request, events, fault)


@web.middleware
async def fault_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    header = request.headers.get(FAULT_HEADER)
    fault = parse_fault(header)
    if header is not None and fault.times is not None:
        seen = request.app[FAULTS_SEEN]
        if len(seen) >= MAX_FAULTS_SEEN and header not in seen:
            seen.clear()
        seen[header] = seen.get(header, 0) + 1
        if seen[header] > fault.times:
            fault = Fault()
    request[FAULT] = fault
    if fault.delay_ms:
        await asyncio.sleep(fault.delay_ms / 1000)
    if fault.status is not None:
        await request.read()
        return _error(fault.status, fault)
    if fault.raw_text is not None:
        return web.Response(text=fault.raw_text, content_type="application/json")
    try:
        response: web.StreamResponse = await handler(request)
    except BadBody as exc:
        return _bad_request(str(exc))
    return response


def create_sandbox_app() -> web.Application:
    """The sandbox as an aiohttp app: mount it, run it, or point relaylog at it."""
    app = web.Application(middlewares=[fault_middleware], client_max_size=64 * 1024 * 1024)
    app[FAULTS_SEEN] = {}
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/responses", responses)
    return app
