"""The official openai SDK, sync and async, streamed and not, pointed at relaylog."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.sandbox import create_sandbox_app
from tests.helpers import Upstream, store_of, stored

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Find an order",
            "parameters": {"type": "object", "properties": {"input": {"type": "string"}}},
        },
    }
]

HEADERS = {
    "Helicone-Property-Prompt-Version": "v2",
    "Helicone-Property-Env": "Staging",
    "Helicone-User-Id": "user-7",
    "Helicone-Session-Id": "sess-1",
    "Helicone-Session-Path": "/support/triage",
    "Helicone-Session-Name": "Support",
}


def base_url(proxy: Any) -> str:
    return str(proxy.make_url("/v1"))


async def test_async_non_streamed_call_is_logged_under_its_helicone_id(
    proxy: Any, upstream: Upstream
) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test-upstream")
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello relaylog"}],
        extra_headers=HEADERS,
    )
    completion = raw.parse()
    request_id = raw.headers["helicone-id"]
    assert raw.headers["helicone-status"] == "success"
    assert completion.choices[0].message.content == "Echo: hello relaylog"
    row = await stored(proxy.app, request_id)
    assert row["outcome"] == "ok"
    assert row["status"] == 200
    assert row["is_stream"] is False
    assert row["request_model"] == "gpt-4o-mini"
    assert row["response_model"] == "gpt-4o-mini"
    assert row["prompt_tokens"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert row["completion_tokens"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert row["total_tokens"] == completion.usage.total_tokens  # type: ignore[union-attr]
    assert row["cached_tokens"] == 0
    assert row["finish_reason"] == "stop"
    assert row["properties"] == {"prompt-version": "v2", "env": "Staging"}
    assert row["user_id"] == "user-7"
    assert (row["session_id"], row["session_path"], row["session_name"]) == (
        "sess-1",
        "/support/triage",
        "Support",
    )
    assert row["response_body"]["choices"][0]["message"]["content"] == "Echo: hello relaylog"
    assert row["request_body"]["messages"][0]["content"] == "hello relaylog"
    # The client's key went upstream; Helicone headers did not.
    sent = upstream.received[-1].headers
    assert sent["Authorization"] == "Bearer sk-test-upstream"
    assert not [h for h in sent if h.lower().startswith("helicone-")]
    await client.close()


async def test_async_stream_is_assembled_with_usage_and_ttft(proxy: Any) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test")
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me a reply"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = raw.headers["helicone-id"]
    text = ""
    usage = None
    async for chunk in raw.parse():
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Echo: stream me a reply"
    assert usage is not None
    row = await stored(proxy.app, request_id)
    assert row["is_stream"] is True
    assert row["outcome"] == "ok"
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]
    assert row["response_body"]["object"] == "chat.completion"
    assert row["response_body"]["choices"][0]["message"]["content"] == text
    assert row["finish_reason"] == "stop"
    assert row["total_tokens"] == usage.total_tokens
    await client.close()


def _sync_calls(url: str) -> tuple[str, str, str]:
    client = openai.OpenAI(base_url=url, api_key="sk-test")
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "sync call"}],
        extra_headers={"Helicone-Request-Id": "ticket-42-1700000000"},
    )
    assert raw.parse().choices[0].message.content == "Echo: sync call"
    stream_raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "tool: order 1234"}],
        tools=TOOLS,
        stream=True,
    )
    calls: dict[int, str] = {}
    for chunk in stream_raw.parse():
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            calls[call.index] = calls.get(call.index, "") + (call.function.arguments or "")  # type: ignore[union-attr]
    embed_raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["a", "b"]
    )
    assert len(embed_raw.parse().data) == 2
    assert json.loads(calls[0]) == {"input": "order 1234"}
    client.close()
    return (
        raw.headers["helicone-id"],
        stream_raw.headers["helicone-id"],
        embed_raw.headers["helicone-id"],
    )


async def test_sync_client_custom_id_tool_calls_and_embeddings(proxy: Any) -> None:
    chat_id, stream_id, embed_id = await asyncio.to_thread(_sync_calls, base_url(proxy))
    assert chat_id == "ticket-42-1700000000"
    assert (await stored(proxy.app, chat_id))["model"] == "gpt-4o"
    streamed = await stored(proxy.app, stream_id)
    message = streamed["response_body"]["choices"][0]["message"]
    assert streamed["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"]["name"] == "lookup_order"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"input": "order 1234"}
    assert message["tool_calls"][0]["id"].startswith("call_")
    embedding = await stored(proxy.app, embed_id)
    assert embedding["path"] == "/v1/embeddings"
    assert embedding["prompt_tokens"] == 2
    assert embedding["model"] == "text-embedding-3-small"


async def test_responses_api_streamed_and_not(proxy: Any) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test")
    raw = await client.responses.with_raw_response.create(model="gpt-4.1-mini", input="hi there")
    assert raw.parse().output_text == "Echo: hi there"
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert (row["prompt_tokens"], row["completion_tokens"]) == (2, 3)
    assert row["finish_reason"] == "completed"
    stream_raw = await client.responses.with_raw_response.create(
        model="gpt-4.1-mini", input="streamed response", stream=True
    )
    kinds = [event.type async for event in stream_raw.parse()]
    assert kinds[-1] == "response.completed"
    streamed = await stored(proxy.app, stream_raw.headers["helicone-id"])
    assert streamed["outcome"] == "ok"
    assert streamed["response_body"]["output"][0]["content"][0]["text"] == "Echo: streamed response"
    assert streamed["total_tokens"] == streamed["prompt_tokens"] + streamed["completion_tokens"]
    await client.close()


async def test_responses_stream_helper_assembles_the_answer(proxy: Any) -> None:
    """The SDK's `responses.stream()` needs each output item announced before its text arrives."""
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test")
    async with client.responses.stream(model="gpt-4.1-mini", input="stream helper") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Echo: stream helper"
    assert final.output[0].type == "message"
    await client.close()


async def test_models_list_passes_through(proxy: Any) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test")
    models = [m.id async for m in client.models.list()]
    assert "gpt-4o-mini" in models
    await client.close()


async def test_sdk_retry_with_same_request_id_leaves_one_row(make_proxy: Any) -> None:
    """The SDK resends the same Helicone-Request-Id after a 503; only the last attempt remains."""
    attempts: list[str] = []

    @web.middleware
    async def fail_first(request: web.Request, handler: Any) -> web.StreamResponse:
        attempts.append(request.headers.get("x-stainless-retry-count", "?"))
        if len(attempts) == 1:
            await request.read()
            return web.json_response({"error": {"message": "busy", "type": "x"}}, status=503)
        response: web.StreamResponse = await handler(request)
        return response

    app = create_sandbox_app()
    app.middlewares.insert(0, fail_first)
    server = TestServer(app)
    await server.start_server()
    proxy = await make_proxy(upstream={"url": str(server.make_url("/v1"))})
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test", max_retries=2)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "retry me"}],
        extra_headers={"Helicone-Request-Id": "chat-retry-1"},
    )
    assert raw.headers["helicone-id"] == "chat-retry-1"
    assert len(attempts) == 2
    row = await stored(proxy.app, "chat-retry-1")
    assert row["outcome"] == "ok"
    rows = await store_of(proxy.app).fetch("SELECT id FROM requests")
    assert rows == [{"id": "chat-retry-1"}]
    await client.close()
    await server.close()


async def test_sdk_raises_its_normal_errors_for_upstream_and_relaylog_failures(
    make_proxy: Any, proxy: Any
) -> None:
    client = openai.AsyncOpenAI(base_url=base_url(proxy), api_key="sk-test", max_retries=0)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"Sandbox-Fault": "status=429, retry_after=3"},
        )
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"Helicone-Target-Url": "https://not-allowed.example"},
        )
    assert "Helicone-Target-Url" in str(bad.value)
    await client.close()
    down = await make_proxy(upstream={"url": "http://127.0.0.1:9/v1"})
    client = openai.AsyncOpenAI(base_url=base_url(down), api_key="sk-test", max_retries=0)
    with pytest.raises(openai.InternalServerError) as unreachable:
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert unreachable.value.status_code == 502
    await client.close()
