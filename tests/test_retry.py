"""Retries by Helicone-Retry-* headers: the openai SDK against relaylog and a faulty sandbox."""

from __future__ import annotations

import uuid
from email.utils import formatdate
from typing import Any

import openai
import pytest

from proxy.config import RetrySettings
from proxy.errors import HeaderError
from proxy.gateway.retry import RetryPolicy, backoff_s, parse_retry, retry_after_s
from tests.helpers import ProxyFactory, Upstream, stored

FAST = {
    "Helicone-Retry-Enabled": "true",
    "Helicone-Retry-Min-Timeout": "1",
    "Helicone-Retry-Max-Timeout": "5",
}


def sdk(proxy: Any) -> openai.AsyncOpenAI:
    # The SDK's own retries are off so every retry seen here is relaylog's.
    return openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="sk-r", max_retries=0)


def fault(spec: str) -> dict[str, str]:
    """A Sandbox-Fault header unique to this call, so `times=` counts only its attempts."""
    return {"Sandbox-Fault": f"{spec}, id={uuid.uuid4().hex}"}


def chats(upstream: Upstream) -> int:
    return sum(1 for r in upstream.received if r.path == "/v1/chat/completions")


async def ask(client: openai.AsyncOpenAI, headers: dict[str, str], **kwargs: Any) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "retry me"}],
        extra_headers=headers,
        **kwargs,
    )


async def test_a_429_then_200_is_recovered(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    raw = await ask(client, {**FAST, **fault("status=429, times=1")})
    assert raw.parse().choices[0].message.content == "Echo: retry me"
    assert raw.headers["Relaylog-Attempts"] == "2"
    assert chats(upstream) == 2
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert row["outcome"] == "ok" and row["status"] == 200
    assert row["attempts"] == 2
    assert [a["status"] for a in row["attempt_log"]] == [429, 200]
    assert all(a["ms"] >= 0 for a in row["attempt_log"])
    assert 0 <= row["attempt_log"][0]["wait_ms"] <= 5
    await client.close()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried(proxy: Any, upstream: Upstream, status: int) -> None:
    client = sdk(proxy)
    raw = await ask(client, {**FAST, **fault(f"status={status}, times=2")})
    assert raw.headers["Relaylog-Attempts"] == "3"
    assert chats(upstream) == 3
    await client.close()


async def test_retry_after_is_honoured(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    raw = await ask(client, {**FAST, **fault("status=429, times=1, retry_after=1")})
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert row["attempt_log"][0]["wait_ms"] == 1000
    assert row["status"] == 200
    await client.close()


async def test_a_retry_after_beyond_the_cap_gives_up_at_once(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(retry={"retry_after_cap_s": 5})
    client = sdk(proxy)
    with pytest.raises(openai.RateLimitError) as caught:
        await ask(client, {**FAST, **fault("status=429, retry_after=3600")})
    assert caught.value.response.headers["Retry-After"] == "3600"
    assert chats(upstream) == 1
    await client.close()


async def test_retries_stop_at_the_limit(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.InternalServerError) as caught:
        await ask(client, {**FAST, "Helicone-Retry-Num": "2", **fault("status=500")})
    assert caught.value.response.headers["Relaylog-Attempts"] == "3"
    assert chats(upstream) == 3
    row = await stored(proxy.app, caught.value.response.headers["helicone-id"])
    assert row["outcome"] == "upstream_error"
    assert [a["status"] for a in row["attempt_log"]] == [500, 500, 500]
    await client.close()


async def test_client_errors_are_not_retried(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError):
        await ask(client, {**FAST, **fault("status=400")})
    assert chats(upstream) == 1
    await client.close()


async def test_never_a_retry_once_the_stream_began(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    raw = await ask(client, {**FAST, **fault("cut_after=2")}, stream=True)
    with pytest.raises(openai.APIError):
        async for _ in raw.parse():
            pass
    assert chats(upstream) == 1
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert row["outcome"] == "stream_incomplete"
    assert row["attempts"] == 1
    await client.close()


async def test_connection_errors_are_retried(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream={"url": "http://127.0.0.1:9/v1"})
    client = sdk(proxy)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(client, {**FAST, "Helicone-Retry-Num": "2"})
    assert caught.value.status_code == 502
    row = await stored(proxy.app, caught.value.response.headers["helicone-id"])
    assert row["outcome"] == "upstream_unreachable"
    assert [a["status"] for a in row["attempt_log"]] == [None, None, None]
    assert all(a["error"] for a in row["attempt_log"])
    await client.close()


async def test_config_default_retries_without_headers(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(retry={"enabled": True, "min_timeout_ms": 1, "max_timeout_ms": 2})
    client = sdk(proxy)
    raw = await ask(client, fault("status=503, times=1"))
    assert raw.headers["Relaylog-Attempts"] == "2"
    with pytest.raises(openai.InternalServerError):
        await ask(client, {"Helicone-Retry-Enabled": "false", **fault("status=503, times=1")})
    await client.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Helicone-Retry-Num", "many"),
        ("Helicone-Retry-Num", "1.5"),
        ("Helicone-Retry-Num", "21"),
        ("Helicone-Retry-Factor", "0.5"),
        ("Helicone-Retry-Min-Timeout", "-1"),
        ("Helicone-Retry-Min-Timeout", "99"),
    ],
)
async def test_bad_retry_headers_are_400(
    proxy: Any, upstream: Upstream, name: str, value: str
) -> None:
    client = sdk(proxy)
    headers = {**FAST, name: value}
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, headers)
    assert name in caught.value.message or "Helicone-Retry-Min-Timeout" in caught.value.message
    assert chats(upstream) == 0
    await client.close()


def test_defaults_are_helicones() -> None:
    policy = parse_retry({"Helicone-Retry-Enabled": "true"}, RetrySettings())
    assert policy == RetryPolicy(num=5, factor=2, min_ms=1000, max_ms=10000, retry_after_cap_s=60)
    assert parse_retry({}, RetrySettings()) is None
    with pytest.raises(HeaderError):
        parse_retry({"Helicone-Retry-Enabled": "sure"}, RetrySettings())


def test_backoff_grows_by_factor_up_to_the_cap_with_jitter() -> None:
    policy = RetryPolicy(num=5, factor=2, min_ms=1000, max_ms=10000, retry_after_cap_s=60)
    full = [backoff_s(policy, n, rand=lambda: 1.0) for n in range(5)]
    assert full == [1.0, 2.0, 4.0, 8.0, 10.0]
    half = [backoff_s(policy, n, rand=lambda: 0.0) for n in range(5)]
    assert half == [0.5, 1.0, 2.0, 4.0, 5.0]


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "7"}) == 7
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "7"}) == 0.25
    assert retry_after_s({"retry-after": formatdate(1_000_030, usegmt=True)}, now=1_000_000) == 30
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
