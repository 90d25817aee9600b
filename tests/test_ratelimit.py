"""Rate limits by Helicone-RateLimit-Policy: exact quotas, shared by replicas and over Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from proxy.config import load_settings
from proxy.errors import ConfigError, HeaderError
from proxy.gateway.ratelimit import RatePolicy, parse_policy
from proxy.state import FORWARDER
from tests.helpers import IN_CI, ProxyFactory, Upstream, stored

REDIS_URL = "redis://127.0.0.1:6379/0"


def sdk(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="sk-l", max_retries=0)


def chats(upstream: Upstream) -> int:
    return sum(1 for r in upstream.received if r.path == "/v1/chat/completions")


async def ask(client: openai.AsyncOpenAI, policy: str | None, **headers: str) -> Any:
    extra = {} if policy is None else {"Helicone-RateLimit-Policy": policy}
    return await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "limit me"}],
        extra_headers={**extra, **headers},
    )


async def test_exactly_quota_calls_pass_and_the_next_is_a_rate_limit_error(
    proxy: Any, upstream: Upstream
) -> None:
    client = sdk(proxy)
    remaining = [
        (await ask(client, "3;w=60")).headers["Helicone-RateLimit-Remaining"] for _ in range(3)
    ]
    assert remaining == ["2", "1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client, "3;w=60")
    headers = caught.value.response.headers
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["Helicone-RateLimit-Limit"] == "3"
    assert headers["Helicone-RateLimit-Remaining"] == "0"
    assert headers["Helicone-RateLimit-Policy"] == "3;w=60;u=request"
    assert headers["RateLimit-Policy"] == '"relaylog";q=3;w=60'
    assert headers["RateLimit"] == f'"relaylog";r=0;t={headers["Retry-After"]}'
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "rate_limit_exceeded"
    assert chats(upstream) == 3
    row = await stored(proxy.app, headers["helicone-id"])
    assert (row["status"], row["outcome"]) == (429, "rate_limited")
    await client.close()


async def test_concurrent_calls_never_exceed_the_quota(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    results = await asyncio.gather(
        *(ask(client, "5;w=60") for _ in range(12)), return_exceptions=True
    )
    passed = [r for r in results if not isinstance(r, BaseException)]
    limited = [r for r in results if isinstance(r, openai.RateLimitError)]
    assert (len(passed), len(limited)) == (5, 7)
    assert chats(upstream) == 5
    await client.close()


async def test_the_window_slides(proxy: Any) -> None:
    client = sdk(proxy)
    limiter = proxy.app[FORWARDER].limiter
    now = time.time()
    limiter.clock = lambda: now
    await ask(client, "1;w=60")
    with pytest.raises(openai.RateLimitError):
        await ask(client, "1;w=60")
    limiter.clock = lambda: now + 61
    assert (await ask(client, "1;w=60")).headers["Helicone-RateLimit-Remaining"] == "0"
    await client.close()


async def test_segments_count_apart_and_need_their_header(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    await ask(client, "1;w=60;s=user", **{"Helicone-User-Id": "ann"})
    await ask(client, "1;w=60;s=user", **{"Helicone-User-Id": "bob"})
    with pytest.raises(openai.RateLimitError):
        await ask(client, "1;w=60;s=user", **{"Helicone-User-Id": "ann"})
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, "1;w=60;s=user")
    assert "Helicone-User-Id" in caught.value.message
    await ask(client, "1;w=60;s=team", **{"Helicone-Property-Team": "red"})
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, "1;w=60;s=team")
    assert "Helicone-Property-team" in caught.value.message
    assert chats(upstream) == 3
    await client.close()


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ("ten;w=60", "quota"),
        ("10", "w=<seconds> is required"),
        ("10;w=5", "w must be"),
        ("10;w=60;u=tokens", "u must be"),
        ("10;w=60;x=1", "unknown"),
        ("10;w=60;w=70", "twice"),
        ("2.5;w=60", "whole number"),
        ("10;w=60;s=bad name", "s must be"),
    ],
)
async def test_a_malformed_policy_is_a_400_naming_the_problem(
    proxy: Any, upstream: Upstream, policy: str, problem: str
) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, policy)
    assert problem in caught.value.message
    assert "Helicone-RateLimit-Policy" in caught.value.message
    assert chats(upstream) == 0
    await client.close()


def test_policy_parsing() -> None:
    assert parse_policy("100;w=3600;u=cents;s=User") == RatePolicy(100, 3600, "cents", "user")
    assert parse_policy(" 5 ; w=60 ") == RatePolicy(5, 60, "request", None)
    assert parse_policy(None) is None and parse_policy("") is None
    with pytest.raises(HeaderError):
        parse_policy("-1;w=60")


async def test_a_cents_policy_counts_cost(make_proxy: ProxyFactory, upstream: Upstream) -> None:
    # 10 cents a token: one call costs far more than the 1-cent quota.
    proxy = await make_proxy(pricing={"overrides": ["gpt-4o-mini=100000/100000"]})
    client = sdk(proxy)
    first = await ask(client, "1;w=60;u=cents")
    assert first.headers["Helicone-RateLimit-Remaining"] == "1"
    with pytest.raises(openai.RateLimitError):
        await ask(client, "1;w=60;u=cents")
    assert chats(upstream) == 1
    await client.close()


async def test_config_default_policy_applies_without_the_header(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(ratelimit={"policy": "1;w=60"})
    client = sdk(proxy)
    await ask(client, None)
    with pytest.raises(openai.RateLimitError):
        await ask(client, None)
    await client.close()


def test_a_bad_config_policy_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match=r"ratelimit\.policy: .*w must be"):
        load_settings(environ={"RELAYLOG_RATELIMIT_POLICY": "10;w=1"})


async def test_two_replicas_on_postgresql_share_one_limit(
    make_proxy: ProxyFactory, postgres_url: str, upstream: Upstream
) -> None:
    one = await make_proxy(store={"db": postgres_url})
    two = await make_proxy(store={"db": postgres_url})
    a, b = sdk(one), sdk(two)
    results = await asyncio.gather(*(ask(c, "4;w=60") for c in [a, b] * 4), return_exceptions=True)
    passed = [r for r in results if not isinstance(r, BaseException)]
    assert len(passed) == 4
    assert all(isinstance(r, openai.RateLimitError) for r in results if r not in passed)
    assert chats(upstream) == 4
    await a.close()
    await b.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own on the real Redis; its keys are deleted afterwards."""
    from redis import asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        if IN_CI:
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    prefix = f"relaylog-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_the_redis_backend_holds_the_same_limit_across_replicas(
    make_proxy: ProxyFactory, redis_prefix: str, upstream: Upstream, tmp_path: Any
) -> None:
    redis = {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    one = await make_proxy(ratelimit=redis)
    two = await make_proxy(ratelimit=redis, store={"db": str(tmp_path / "second.db")})
    a, b = sdk(one), sdk(two)
    results = await asyncio.gather(
        *(ask(c, "5;w=60;s=user", **{"Helicone-User-Id": "u"}) for c in [a, b] * 6),
        return_exceptions=True,
    )
    passed = [r for r in results if not isinstance(r, BaseException)]
    assert len(passed) == 5
    assert sum(isinstance(r, openai.RateLimitError) for r in results) == 7
    assert chats(upstream) == 5
    # Nothing went to the store's counters: Redis held them.
    assert await one.app[FORWARDER].cache.store.fetch("SELECT key FROM ratelimit_events") == []
    await a.close()
    await b.close()


async def test_the_redis_window_slides_and_counts_cents(
    make_proxy: ProxyFactory, redis_prefix: str
) -> None:
    proxy = await make_proxy(
        ratelimit={"redis_url": REDIS_URL, "redis_prefix": redis_prefix},
        pricing={"overrides": ["gpt-4o-mini=100000/100000"]},
    )
    client = sdk(proxy)
    limiter = proxy.app[FORWARDER].limiter
    now = time.time()
    limiter.clock = lambda: now
    await ask(client, "1;w=60;u=cents")
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client, "1;w=60;u=cents")
    assert caught.value.response.headers["Retry-After"] == "60"
    limiter.clock = lambda: now + 61
    await ask(client, "1;w=60;u=cents")
    await client.close()
