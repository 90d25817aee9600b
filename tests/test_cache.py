"""The response cache end to end: the openai SDK against relaylog and the sandbox upstream."""

from __future__ import annotations

import time
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from proxy.gateway.replay import split_events
from proxy.state import FORWARDER
from storage.cache import CacheEntry, CacheFilter
from tests.helpers import AppUpstream, ProxyFactory, Upstream, store_of, stored

CACHE = {"Helicone-Cache-Enabled": "true"}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
    }
]


def sdk(proxy: Any, key: str = "sk-cache-a") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key=key, max_retries=0)


def chats(upstream: Upstream) -> int:
    return sum(1 for r in upstream.received if r.path == "/v1/chat/completions")


async def ask(client: openai.AsyncOpenAI, text: str, **headers: str) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        extra_headers={**CACHE, **headers},
    )


async def test_second_identical_call_is_a_hit_with_no_upstream_request(
    proxy: Any, upstream: Upstream
) -> None:
    client = sdk(proxy)
    first = await ask(client, "cache me")
    second = await ask(client, "cache me")
    assert first.headers["Helicone-Cache"] == "MISS"
    assert second.headers["Helicone-Cache"] == "HIT"
    assert second.headers["Helicone-Cache-Bucket-Idx"] == "0"
    assert second.parse().model_dump() == first.parse().model_dump()
    assert chats(upstream) == 1
    original = await stored(proxy.app, first.headers["helicone-id"])
    hit = await stored(proxy.app, second.headers["helicone-id"])
    assert (original["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["outcome"] == "ok"
    assert hit["cache_source_id"] == original["id"]
    assert original["cost_usd"] > 0
    assert hit["cost_usd"] == 0
    assert hit["saved_cost_usd"] == pytest.approx(original["cost_usd"])
    assert (hit["prompt_tokens"], hit["completion_tokens"], hit["total_tokens"]) == (0, 0, 0)
    assert hit["saved_prompt_tokens"] == original["prompt_tokens"]
    assert hit["saved_completion_tokens"] == original["completion_tokens"]
    await client.close()


async def test_without_the_header_nothing_is_cached(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    for _ in range(2):
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "plain"}]
        )
        assert "Helicone-Cache" not in raw.headers
    assert chats(upstream) == 2
    await client.close()


async def test_config_default_caches_and_the_header_can_turn_it_off(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(cache={"enabled": True})
    client = sdk(proxy)
    for _ in range(2):
        await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "by default"}]
        )
    assert chats(upstream) == 1
    off = await ask(client, "by default", **{"Helicone-Cache-Enabled": "false"})
    assert "Helicone-Cache" not in off.headers
    assert chats(upstream) == 2
    await client.close()


async def test_key_order_in_the_body_does_not_matter(proxy: Any, upstream: Upstream) -> None:
    headers = {**CACHE, "Authorization": "Bearer sk-a", "Content-Type": "application/json"}
    one = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "order"}]}'
    two = b'{"messages": [{"content": "order", "role": "user"}], "model": "gpt-4o-mini"}'
    first = await proxy.post("/v1/chat/completions", data=one, headers=headers)
    second = await proxy.post("/v1/chat/completions", data=two, headers=headers)
    assert first.headers["Helicone-Cache"] == "MISS"
    assert second.headers["Helicone-Cache"] == "HIT"
    assert await second.read() == await first.read()
    assert chats(upstream) == 1


async def test_another_credential_misses(proxy: Any, upstream: Upstream) -> None:
    a, b = sdk(proxy, "sk-a"), sdk(proxy, "sk-b")
    await ask(a, "private")
    other = await ask(b, "private")
    assert other.headers["Helicone-Cache"] == "MISS"
    assert chats(upstream) == 2
    assert (await ask(b, "private")).headers["Helicone-Cache"] == "HIT"
    stored_keys = await store_of(proxy.app).fetch("SELECT key, body FROM cache_entries")
    assert not any("sk-a" in row["key"] + row["body"] for row in stored_keys)
    await a.close()
    await b.close()


async def test_seed_and_ignored_keys_shape_the_key(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    await ask(client, "seeded", **{"Helicone-Cache-Seed": "one"})
    assert (await ask(client, "seeded", **{"Helicone-Cache-Seed": "two"})).headers[
        "Helicone-Cache"
    ] == "MISS"
    ignore = {"Helicone-Cache-Ignore-Keys": "user,temperature"}
    await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "ignore"}],
        user="u1",
        extra_headers={**CACHE, **ignore},
    )
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "ignore"}],
        user="u2",
        temperature=0.5,
        extra_headers={**CACHE, **ignore},
    )
    assert raw.headers["Helicone-Cache"] == "HIT"
    assert chats(upstream) == 3
    await client.close()


async def _stream(client: openai.AsyncOpenAI, text: str, **kwargs: Any) -> tuple[Any, list[Any]]:
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": text}],
        stream=True,
        extra_headers=CACHE,
        **kwargs,
    )
    return raw, [chunk.model_dump() async for chunk in raw.parse()]


async def test_a_streamed_hit_replays_the_same_chunks(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    first, first_chunks = await _stream(client, "stream this back")
    second, second_chunks = await _stream(client, "stream this back")
    assert (first.headers["Helicone-Cache"], second.headers["Helicone-Cache"]) == ("MISS", "HIT")
    assert second_chunks == first_chunks
    assert len(first_chunks) > 3
    assert all(c["usage"] is None for c in second_chunks)
    assert chats(upstream) == 1
    # A later client that asks for usage gets its usage chunk from the same entry.
    _, with_usage = await _stream(
        client, "stream this back", stream_options={"include_usage": True}
    )
    assert with_usage[-1]["usage"]["total_tokens"] > 0
    assert with_usage[:-1] == first_chunks
    assert chats(upstream) == 1
    hit = await stored(proxy.app, second.headers["helicone-id"])
    assert hit["is_stream"] is True and hit["cache_hit"] is True
    assert hit["response_body"]["choices"][0]["message"]["content"] == "Echo: stream this back"
    await client.close()


async def test_a_streamed_hit_keeps_event_boundaries(proxy: Any) -> None:
    headers = {**CACHE, "Authorization": "Bearer sk-a"}
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "a b c"}],
        "stream": True,
    }
    first = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    miss = await first.read()
    second = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    assert second.headers["Helicone-Cache"] == "HIT"
    assert second.headers["Content-Type"].startswith("text/event-stream")
    assert split_events(await second.read()) == split_events(miss)


async def test_a_stream_hit_from_a_plain_call_entry_carries_tool_calls(
    proxy: Any, upstream: Upstream
) -> None:
    client = sdk(proxy)
    plain = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "tool: find order 7"}],
        tools=TOOLS,
        extra_headers=CACHE,
    )
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "tool: find order 7"}],
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=CACHE,
    )
    assert raw.headers["Helicone-Cache"] == "HIT"
    chunks = [chunk async for chunk in raw.parse()]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    expected = plain.choices[0].message.tool_calls
    assert expected is not None
    assert calls[0].id == expected[0].id
    assert calls[0].function is not None
    original = expected[0]
    assert original.type == "function"
    assert calls[0].function.arguments == original.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and plain.usage is not None
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens
    assert chats(upstream) == 1
    await client.close()


async def test_reasoning_survives_both_ways(
    make_proxy: ProxyFactory, app_upstream: AppUpstream
) -> None:
    sent: list[bool] = []

    async def reasoning(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        sent.append(bool(body.get("stream")))
        message = {"role": "assistant", "content": "42", "reasoning_content": "think, then say 42"}
        completion = {
            "id": "chatcmpl-r",
            "object": "chat.completion",
            "created": 1,
            "model": "deepseek-reasoner",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
        return web.json_response(completion)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", reasoning)
    proxy = await make_proxy(upstream={"url": await app_upstream(app)})
    headers = {**CACHE, "Authorization": "Bearer sk-a"}
    body: dict[str, Any] = {
        "model": "deepseek-reasoner",
        "messages": [{"role": "user", "content": "q"}],
    }
    await (await proxy.post("/v1/chat/completions", json=body, headers=headers)).read()
    hit = await proxy.post("/v1/chat/completions", json={**body, "stream": True}, headers=headers)
    assert hit.headers["Helicone-Cache"] == "HIT"
    deltas = [
        orjson.loads(e.removeprefix(b"data: "))["choices"][0]["delta"]
        for e in split_events(await hit.read())
        if b"[DONE]" not in e
    ]
    assert {"reasoning_content": "think, then say 42"} in deltas
    assert {"content": "42"} in deltas
    row = await stored(proxy.app, hit.headers["helicone-id"])
    message = row["response_body"]["choices"][0]["message"]
    assert message["reasoning_content"] == "think, then say 42"
    assert sent == [False]


async def test_a_cut_stream_is_not_cached(proxy: Any, upstream: Upstream) -> None:
    headers = {**CACHE, "Authorization": "Bearer sk-a", "Sandbox-Fault": "cut_after=3"}
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "cut"}],
        "stream": True,
    }
    first = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    with pytest.raises(Exception):  # noqa: B017 - the client sees the cut as a payload error
        await first.read()
    del headers["Sandbox-Fault"]
    second = await proxy.post("/v1/chat/completions", json=body, headers=headers)
    await second.read()
    assert second.headers["Helicone-Cache"] == "MISS"
    assert chats(upstream) == 2
    assert (await store_of(proxy.app).cache_stats())["entries"] == 1


async def test_errors_are_not_cached(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await ask(client, "fail", **{"Sandbox-Fault": "status=500"})
    assert chats(upstream) == 2
    assert (await store_of(proxy.app).cache_stats())["entries"] == 0
    await client.close()


async def test_entries_expire_by_ttl(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    await ask(client, "short lived", **{"Cache-Control": "max-age=60"})
    assert (await ask(client, "short lived")).headers["Helicone-Cache"] == "HIT"
    cache = proxy.app[FORWARDER].cache
    cache.clock = lambda: time.time() + 61
    assert (await ask(client, "short lived")).headers["Helicone-Cache"] == "MISS"
    assert chats(upstream) == 2
    await client.close()


async def test_bucket_fills_then_serves_one_of_its_answers(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    bucket = {"Helicone-Cache-Bucket-Max-Size": "3"}
    states = [(await ask(client, "bucket", **bucket)).headers for _ in range(6)]
    assert [h["Helicone-Cache"] for h in states] == ["MISS"] * 3 + ["HIT"] * 3
    assert {h["Helicone-Cache-Bucket-Idx"] for h in states[3:]} <= {"0", "1", "2"}
    assert chats(upstream) == 3
    rows = await store_of(proxy.app).fetch("SELECT bucket FROM cache_entries ORDER BY bucket")
    assert [r["bucket"] for r in rows] == [0, 1, 2]
    await client.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Helicone-Cache-Bucket-Max-Size", "21"),
        ("Helicone-Cache-Bucket-Max-Size", "0"),
        ("Helicone-Cache-Bucket-Max-Size", "many"),
        ("Cache-Control", f"max-age={366 * 86400}"),
        ("Helicone-Cache-Enabled", "maybe"),
    ],
)
async def test_bad_cache_headers_are_400_naming_the_header(
    proxy: Any, upstream: Upstream, name: str, value: str
) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, "bad", **{name: value})
    assert name in caught.value.message
    assert chats(upstream) == 0
    await client.close()


async def test_purge_makes_the_next_call_miss(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    await ask(client, "purge me")
    await ask(client, "keep me", **{"Helicone-Cache-Seed": "kept"})
    store = store_of(proxy.app)
    assert await store.cache_clear(CacheFilter(seed="")) == 1
    assert (await ask(client, "purge me")).headers["Helicone-Cache"] == "MISS"
    kept = await ask(client, "keep me", **{"Helicone-Cache-Seed": "kept"})
    assert kept.headers["Helicone-Cache"] == "HIT"
    await client.close()


def _entry(key: str, created: float, size: int) -> CacheEntry:
    return CacheEntry(
        key=key,
        bucket=0,
        status=200,
        content_type="application/json",
        is_stream=False,
        body="x" * size,
        source_request_id=None,
        model="m",
        path="/v1/chat/completions",
        seed="",
        created_at=created,
        expires_at=created + 100,
    )


async def test_oldest_entries_are_evicted_beyond_max_bytes(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url})
    store = store_of(proxy.app)
    now = time.time()
    for n in range(5):
        entry = _entry(f"k{n}", now + n, 1000)
        await store.cache_put(entry)
    assert await store.cache_sweep(3 * entry.size, now + 5) == 2
    rows = await store.fetch("SELECT key FROM cache_entries ORDER BY created_at")
    assert [r["key"] for r in rows] == ["k2", "k3", "k4"]
    await store.cache_put(_entry("late", now + 200, 10))
    assert await store.cache_sweep(10**6, now + 200) == 3
    rows = await store.fetch("SELECT key FROM cache_entries")
    assert [r["key"] for r in rows] == ["late"]


async def test_two_replicas_on_postgresql_share_the_cache(
    make_proxy: ProxyFactory, postgres_url: str, upstream: Upstream
) -> None:
    one = await make_proxy(store={"db": postgres_url})
    two = await make_proxy(store={"db": postgres_url})
    a, b = sdk(one), sdk(two)
    first = await ask(a, "shared")
    second = await ask(b, "shared")
    assert (first.headers["Helicone-Cache"], second.headers["Helicone-Cache"]) == ("MISS", "HIT")
    assert chats(upstream) == 1
    hit = await stored(two.app, second.headers["helicone-id"])
    assert hit["cache_source_id"] == first.headers["helicone-id"]
    await a.close()
    await b.close()


async def test_two_proxy_keys_do_not_share_answers(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(auth={"proxy_keys": ["k-one", "k-two"]})
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tenant"}]}
    states = []
    for key in ("k-one", "k-two", "k-one"):
        headers = {**CACHE, "Helicone-Auth": f"Bearer {key}"}
        response = await proxy.post("/v1/chat/completions", json=body, headers=headers)
        await response.read()
        states.append(response.headers["Helicone-Cache"])
    assert states == ["MISS", "MISS", "HIT"]
