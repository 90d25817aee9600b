"""A small hand-built log for the query, stats, export and dataset tests: six exchanges with
known properties, feedback, session feedback and scores, written through the store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from storage import Row, Store, open_store


def _chat(text: str) -> str:
    return orjson.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).decode()


def _reply(text: str) -> str:
    message = {"role": "assistant", "content": text}
    return orjson.dumps({"choices": [{"index": 0, "message": message}]}).decode()


ROWS = [
    Row(
        id="r1",
        created_at="2024-05-01T10:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model="gpt-4o-mini",
        request_model="gpt-4o-mini",
        status=200,
        outcome="ok",
        latency_ms=100.0,
        ttft_ms=20.0,
        prompt_tokens=10,
        completion_tokens=5,
        total_tokens=15,
        cost_usd=0.001,
        user_id="alice",
        session_id="s1",
        properties={"app": "chat", "prompt_version": "v1"},
        request_body=_chat("Hello WORLD"),
        response_body=_reply("Echo: Hello WORLD"),
    ),
    Row(
        id="r2",
        created_at="2024-05-01T12:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model="gpt-4o",
        status=200,
        outcome="ok",
        latency_ms=250.0,
        ttft_ms=40.0,
        prompt_tokens=100,
        completion_tokens=50,
        total_tokens=150,
        cost_usd=0.01,
        user_id="bob",
        session_id="s1",
        properties={"app": "search", "prompt_version": "v2"},
        request_body=_chat("second question"),
        response_body=_reply("Echo: second question"),
    ),
    Row(
        id="r3",
        created_at="2024-05-02T09:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model="gpt-4o-mini",
        status=500,
        outcome="upstream_error",
        latency_ms=50.0,
        user_id="alice",
        properties={"app": "chat"},
        error="upstream answered 500",
    ),
    Row(
        id="r4",
        created_at="2024-05-02T15:30:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        status=400,
        outcome="rejected",
    ),
    Row(
        id="r5",
        created_at="2024-05-03T08:00:00.000Z",
        method="POST",
        path="/v1/embeddings",
        model="text-embedding-3-small",
        status=200,
        outcome="ok",
        latency_ms=30.0,
        prompt_tokens=8,
        total_tokens=8,
        cost_usd=0.00000016,
        user_id="carol",
        session_id="s2",
        properties={"app": "Search Engine", "prompt_version": "v2"},
    ),
    Row(
        id="r6",
        created_at="2024-05-03T20:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model="my-local-llama",
        status=200,
        outcome="ok",
        is_stream=True,
        latency_ms=900.0,
        ttft_ms=300.0,
        prompt_tokens=40,
        completion_tokens=60,
        total_tokens=100,
        user_id="bob",
        session_id="s2",
        properties={"app": "chat", "note": "50% off_sale"},
    ),
]
IDS = [row.id for row in ROWS]


async def fill(store: Store) -> None:
    """Write the six rows, their feedback, session feedback and scores."""
    await store.write_batch(ROWS)
    await store.upsert_feedback("r1", True, "great answer")
    await store.upsert_feedback("r2", False, None)
    await store.upsert_feedback("r5", True, None)
    await store.upsert_session_feedback("s1", True)
    await store.upsert_session_feedback("s2", False)
    await store.upsert_scores("r1", {"accuracy": 95, "helpful": 1})
    await store.upsert_scores("r2", {"accuracy": 80})
    await store.upsert_scores("r5", {"accuracy": 60})
    await store.upsert_scores("r6", {"helpful": 0})


def filled_sqlite(path: Path) -> str:
    """A SQLite file holding the hand-built log, for the command-line tests; returns its path."""

    async def build() -> None:
        store = open_store(str(path))
        await store.open()
        await fill(store)
        await store.close()

    asyncio.run(build())
    return str(path)
