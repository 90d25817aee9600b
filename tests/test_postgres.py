"""Several relaylog replicas sharing one PostgreSQL store."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
from openai import AsyncStream

from proxy.state import STORE
from tests.helpers import ProxyFactory, settle, stored


async def test_two_replicas_log_into_one_postgres_store(
    make_proxy: ProxyFactory, postgres_url: str
) -> None:
    first = await make_proxy(store={"db": postgres_url})
    second = await make_proxy(store={"db": postgres_url})
    clients = [
        openai.AsyncOpenAI(base_url=str(p.make_url("/v1")), api_key="sk-test")
        for p in (first, second)
    ]

    async def call(n: int) -> str:
        raw = await clients[n % 2].chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"message {n}"}],
            stream=n % 3 == 0,
            extra_headers={"Helicone-Property-Replica": str(n % 2), "Helicone-User-Id": "pg"},
        )
        if n % 3 == 0:
            stream = raw.parse()
            assert isinstance(stream, AsyncStream)
            async for _ in stream:
                pass
        return raw.headers["helicone-id"]

    ids = await asyncio.gather(*(call(n) for n in range(40)))
    await settle(first.app)
    await settle(second.app)
    for client in clients:
        await client.close()
    rows = await first.app[STORE].fetch(
        "SELECT id, is_stream, outcome FROM requests WHERE user_id = ? ORDER BY id", ("pg",)
    )
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["outcome"] == "ok" for r in rows)
    assert sum(r["is_stream"] for r in rows) == len([n for n in range(40) if n % 3 == 0])
    # A row written by one replica reads back in full through the other.
    row: dict[str, Any] = await stored(second.app, ids[0])
    assert row["response_body"]["choices"][0]["message"]["content"] == "Echo: message 0"
    assert row["properties"] == {"replica": "0"}


async def test_feedback_on_one_replica_for_a_call_served_by_another(
    make_proxy: ProxyFactory, postgres_url: str
) -> None:
    serving = await make_proxy(store={"db": postgres_url})
    rating = await make_proxy(store={"db": postgres_url}, feedback={"wait_ms": 3000})
    answer = await serving.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Helicone-Request-Id": "cross-replica-1", "Helicone-Session-Id": "s-cross"},
    )
    assert answer.status == 200
    # Sent at once: the other replica has never seen the id and polls the shared store.
    feedback = await rating.post("/v1/request/cross-replica-1/feedback", json={"rating": True})
    assert feedback.status == 200, await feedback.text()
    session = await rating.post("/v1/session/s-cross/feedback", json={"rating": False})
    assert session.status == 200
    detail = await (await serving.get("/v1/request/cross-replica-1")).json()
    assert detail["data"]["feedback"]["rating"] is True
    assert detail["data"]["session"]["feedback"]["rating"] is False
