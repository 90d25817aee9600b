"""Fallbacks by Helicone-Fallbacks: a second sandbox, model names, allowlisting, retries first."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.errors import HeaderError
from proxy.gateway.fallbacks import parse_fallbacks, plan, redacted
from proxy.gateway.retry import Target
from proxy.sandbox import create_sandbox_app
from tests.helpers import ProxyFactory, Upstream, stored


@dataclass
class Second:
    """Another sandbox on its own port, counting the calls it answered."""

    origin: str
    host: str
    models: list[str]


@pytest.fixture
async def second() -> AsyncIterator[Second]:
    app = create_sandbox_app()
    models: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        models.append(orjson.loads(await request.read()).get("model"))
        response: web.StreamResponse = await handler(request)
        return response

    app.middlewares.insert(0, record)
    server = TestServer(app)
    await server.start_server()
    origin = str(server.make_url("")).rstrip("/")
    yield Second(origin, f"127.0.0.1:{server.port}", models)
    await server.close()


def sdk(proxy: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="sk-f", max_retries=0)


def upstream_models(upstream: Upstream) -> list[str]:
    return [orjson.loads(r.body)["model"] for r in upstream.received if r.body]


async def ask(client: openai.AsyncOpenAI, headers: dict[str, str]) -> Any:
    return await client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "fall back"}],
        extra_headers=headers,
    )


def fallbacks(*entries: Any) -> dict[str, str]:
    return {"Helicone-Fallbacks": orjson.dumps(list(entries)).decode()}


async def test_a_500_falls_back_to_a_second_sandbox(
    make_proxy: ProxyFactory, upstream: Upstream, second: Second
) -> None:
    proxy = await make_proxy(upstream={"target_allowlist": [second.host]})
    client = sdk(proxy)
    # The fault header goes to both upstreams; the fallback's own headers clear it.
    entry = {
        "target-url": second.origin,
        "headers": {"Sandbox-Fault": "", "Authorization": "Bearer sk-second"},
        "onCodes": [500],
    }
    raw = await ask(client, {"Sandbox-Fault": "status=500", **fallbacks(entry)})
    assert raw.parse().choices[0].message.content == "Echo: fall back"
    assert raw.headers["Helicone-Fallback-Index"] == "1"
    assert len(upstream.received) == 1 and second.models == ["gpt-4o-mini"]
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert (row["status"], row["outcome"], row["fallback_index"]) == (200, "ok", 1)
    assert row["upstream_target"] == second.origin
    assert [(a["target"], a["status"]) for a in row["attempt_log"]] == [(0, 500), (1, 200)]
    # The target's credentials are masked in the logged header.
    logged = orjson.loads(row["request_headers"]["helicone-fallbacks"])
    assert logged[0]["headers"] == {"Sandbox-Fault": "***", "Authorization": "***"}
    assert "sk-second" not in orjson.dumps(row).decode()
    await client.close()


async def test_an_unlisted_target_is_refused_with_no_connection_attempt(
    proxy: Any, upstream: Upstream
) -> None:
    connections = 0

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, fallbacks({"target-url": f"http://127.0.0.1:{port}"}))
    assert "Helicone-Fallbacks" in caught.value.message
    assert "target_allowlist" in caught.value.message
    assert connections == 0
    assert upstream.received == []
    row = await stored(proxy.app, caught.value.response.headers["helicone-id"])
    assert row["outcome"] == "rejected"
    server.close()
    await server.wait_closed()
    await client.close()


async def test_a_plain_list_of_model_names_falls_back_on_the_same_upstream(
    proxy: Any, upstream: Upstream
) -> None:
    client = sdk(proxy)
    once = {"Sandbox-Fault": f"status=503, times=1, id={uuid.uuid4().hex}"}
    raw = await ask(client, {**once, "Helicone-Fallbacks": '["gpt-4o"]'})
    assert raw.parse().model == "gpt-4o"
    assert raw.headers["Helicone-Fallback-Index"] == "1"
    assert upstream_models(upstream) == ["gpt-4o-mini", "gpt-4o"]
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert row["response_model"] == "gpt-4o"
    await client.close()


async def test_retries_run_before_the_next_fallback(
    make_proxy: ProxyFactory, upstream: Upstream, second: Second
) -> None:
    proxy = await make_proxy(upstream={"target_allowlist": [second.host]})
    client = sdk(proxy)
    retry = {
        "Helicone-Retry-Enabled": "true",
        "Helicone-Retry-Num": "2",
        "Helicone-Retry-Min-Timeout": "1",
        "Helicone-Retry-Max-Timeout": "2",
    }
    entry = {"target-url": second.origin, "headers": {"Sandbox-Fault": ""}}
    raw = await ask(client, {"Sandbox-Fault": "status=502", **retry, **fallbacks(entry)})
    assert raw.headers["Relaylog-Attempts"] == "4"
    assert len(upstream.received) == 3 and len(second.models) == 1
    await client.close()


async def test_a_status_outside_the_codes_is_relayed(proxy: Any, upstream: Upstream) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError):
        await ask(client, {"Sandbox-Fault": "status=400", "Helicone-Fallbacks": '["gpt-4o"]'})
    assert upstream_models(upstream) == ["gpt-4o-mini"]
    await client.close()


async def test_an_unreachable_first_upstream_falls_back(
    make_proxy: ProxyFactory, second: Second
) -> None:
    proxy = await make_proxy(
        upstream={"url": "http://127.0.0.1:9/v1", "target_allowlist": [second.host]}
    )
    client = sdk(proxy)
    raw = await ask(client, fallbacks({"target-url": second.origin}))
    assert raw.headers["Helicone-Fallback-Index"] == "1"
    row = await stored(proxy.app, raw.headers["helicone-id"])
    assert [a["status"] for a in row["attempt_log"]] == [None, 200]
    await client.close()


async def test_the_config_default_applies_without_the_header(
    make_proxy: ProxyFactory, upstream: Upstream
) -> None:
    proxy = await make_proxy(fallbacks={"default": '["gpt-4o"]'})
    client = sdk(proxy)
    once = {"Sandbox-Fault": f"status=500, times=1, id={uuid.uuid4().hex}"}
    raw = await ask(client, once)
    assert raw.headers["Helicone-Fallback-Index"] == "1"
    await client.close()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not json", "not valid JSON"),
        ("{}", "JSON list"),
        ("[]", "JSON list"),
        ('[{"target": "x"}]', "unknown field"),
        ('[{"headers": {"Helicone-Auth": "x"}}]', "may not set"),
        ('[{"headers": {"Host": "x"}}]', "may not set"),
        ('[{"onCodes": [99]}]', "onCodes"),
        ('[{"onCodes": [{"from": 500, "to": 400}]}]', "onCodes"),
        ('[{"bodyKeyOverride": []}]', "bodyKeyOverride"),
        ('[""]', "model name"),
        ('[{"target-url": "ftp://x"}]', "http(s) URL"),
    ],
)
async def test_a_malformed_header_is_a_400(
    proxy: Any, upstream: Upstream, value: str, problem: str
) -> None:
    client = sdk(proxy)
    with pytest.raises(openai.BadRequestError) as caught:
        await ask(client, {"Helicone-Fallbacks": value})
    assert problem in caught.value.message
    assert upstream.received == []
    await client.close()


def test_plan_orders_targets_and_keeps_the_key_on_the_first_upstream_only() -> None:
    first = Target(0, "https://api.example/v1", False, "sk-conf")
    parsed = parse_fallbacks(
        '["m2", {"target-url": "https://other.example", "onCodes": [{"from": 500, "to": 502}],'
        ' "bodyKeyOverride": {"model": "m3"}}]',
        lambda url: url,
    )
    targets = plan(first, parsed, [429, 500])
    assert [(t.index, t.base, t.upstream_key) for t in targets] == [
        (0, "https://api.example/v1", "sk-conf"),
        (1, "https://api.example/v1", "sk-conf"),
        (2, "https://other.example", None),
    ]
    assert targets[1].body_override == {"model": "m2"} and targets[1].moves_on(429)
    assert targets[2].on_codes == {500, 501, 502}
    assert targets[2].url("/v1/chat/completions") == "https://other.example/v1/chat/completions"
    assert targets[0].url("/v1/chat/completions") == "https://api.example/v1/chat/completions"
    with pytest.raises(HeaderError):
        parse_fallbacks("[" + ",".join(['"m"'] * 11) + "]", lambda url: url)
    assert redacted("[1, 2") == "[1, 2"
