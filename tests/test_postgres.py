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


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def test_a_nul_in_a_logged_field_keeps_the_row_on_every_store(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url})
    body = {"model": "gpt\x00x", "messages": [{"role": "user", "content": "a\x00b"}]}
    answer = await proxy.post(
        "/v1/chat/completions", json=body, headers={"Helicone-Request-Id": "nul-1"}
    )
    assert answer.status == 200
    row = await stored(proxy.app, "nul-1")
    assert row["model"] == "gpt\ufffdx"
    # The JSON body keeps its escaped NUL: the client's text is stored as sent.
    assert row["request_body"]["messages"][0]["content"] == "a\x00b"


async def test_nul_in_feedback_fields_is_a_400_that_changes_nothing(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url}, feedback={"wait_ms": 0})
    headers = {"Helicone-Request-Id": "nul-2", "Helicone-Session-Id": "s-nul"}
    assert (await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)).status == 200
    await settle(proxy.app)
    attempts = [
        ("/v1/request/nul-2/feedback", {"rating": True, "comment": "a\x00b"}),
        ("/v1/request/nul-2/score", {"scores": {"a\x00b": 1}}),
        ("/v1/session/s%00x/feedback", {"rating": True}),
    ]
    for path, payload in attempts:
        answer = await proxy.post(path, json=payload)
        assert answer.status == 400, (path, await answer.text())
        assert "NUL" in (await answer.json())["error"]
    row = await stored(proxy.app, "nul-2")
    assert row["feedback"] is None and row["scores"] == {}


async def test_a_batch_item_with_a_nul_fails_alone(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url}, feedback={"wait_ms": 0})
    for n in (1, 2):
        headers = {"Helicone-Request-Id": f"batch-nul-{n}"}
        assert (await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)).status == 200
    await settle(proxy.app)
    items = [
        {"request_id": "batch-nul-1", "rating": True, "comment": "x\x00"},
        {"request_id": "batch-nul-2", "rating": False},
    ]
    answer = await proxy.post("/v1/feedback/batch", json={"items": items})
    assert answer.status == 200
    data = (await answer.json())["data"]
    assert [r["status"] for r in data["results"]] == [400, 200]
    assert (await stored(proxy.app, "batch-nul-1"))["feedback"] is None
    assert (await stored(proxy.app, "batch-nul-2"))["feedback"]["rating"] is False


async def test_creating_one_dataset_name_at_once_is_a_409_for_the_losers(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url})
    headers = {"Helicone-Request-Id": "race-1"}
    assert (await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)).status == 200
    await settle(proxy.app)
    body = {"datasetName": "race", "requestIds": ["race-1"]}
    answers = await asyncio.gather(
        *(proxy.post("/v1/helicone-dataset", json=body) for _ in range(6))
    )
    assert sorted(a.status for a in answers) == [201] + [409] * 5
    listed = await (await proxy.post("/v1/helicone-dataset/query", json={})).json()
    assert [d["name"] for d in listed["data"]] == ["race"]


async def test_a_score_call_sets_at_most_256_names(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url}, feedback={"wait_ms": 0})
    headers = {"Helicone-Request-Id": "many-scores"}
    assert (await proxy.post("/v1/chat/completions", json=CHAT, headers=headers)).status == 200
    await settle(proxy.app)
    too_many = {"scores": {f"s{n}": n for n in range(257)}}
    answer = await proxy.post("/v1/request/many-scores/score", json=too_many)
    assert answer.status == 400
    enough = {"scores": {f"s{n}": n for n in range(256)}}
    assert (await proxy.post("/v1/request/many-scores/score", json=enough)).status == 201
    assert len((await stored(proxy.app, "many-scores"))["scores"]) == 256
