"""Feedback, session feedback, scores and request detail, in the flows Helicone's docs teach."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from proxy.api.models import MAX_BATCH_ITEMS
from proxy.api.models import MAX_FEEDBACK_BODY_BYTES as MAX_BODY_BYTES
from proxy.cli import main
from storage import Row
from storage.models import utc_iso
from storage.sqlite import SQLiteStore
from tests.helpers import Client, ProxyFactory, Upstream, settle, store_of, stored


async def chat(client: Client, text: str, **headers: str) -> str:
    """One non-streamed chat call through relaylog; returns its helicone-id."""
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
        headers=headers,
    )
    assert response.status == 200, await response.text()
    return response.headers["helicone-id"]


async def logged(client: Client, text: str = "hi", **headers: str) -> str:
    """A chat call whose row is already committed."""
    request_id = await chat(client, text, **headers)
    await settle(client.app)
    return request_id


async def post(client: Client, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(
        path, data=io.BytesIO(data), headers={"Content-Type": "application/json", **headers}
    )
    return response.status, orjson.loads(await response.read())


async def rated(client: Client) -> list[dict[str, Any]]:
    return await store_of(client.app).fetch("SELECT * FROM feedback ORDER BY request_id")


async def write_row(client: Client, request_id: str, **fields: Any) -> None:
    """A row written straight to the store, as another replica would."""
    row = Row(
        id=request_id,
        created_at=utc_iso(time.time()),
        method="POST",
        path="/v1/chat/completions",
        **fields,
    )
    await store_of(client.app).write_batch([row])


# Flows from Helicone's feedback docs


async def test_chat_app_with_custom_uuid_then_feedback(proxy: Client) -> None:
    custom_id = str(uuid.uuid4())
    ai = openai.AsyncOpenAI(base_url=str(proxy.make_url("/v1")), api_key="sk-test")
    completion = await ai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Explain quantum computing"}],
        extra_headers={"Helicone-Request-Id": custom_id},
    )
    await ai.close()
    assert completion.choices[0].message.content == "Echo: Explain quantum computing"

    status, body = await post(proxy, f"/v1/request/{custom_id}/feedback", {"rating": True})

    assert status == 200
    assert body["error"] is None
    assert body["data"]["request_id"] == custom_id
    assert body["data"]["rating"] is True
    row = await stored(proxy.app, custom_id)
    assert row["feedback"]["rating"] is True
    assert row["response_body"]["choices"][0]["message"]["content"].startswith("Echo:")


async def test_support_bot_ticket_ids_get_feedback_when_the_ticket_closes(proxy: Client) -> None:
    ticket_id = f"ticket-4242-{int(time.time() * 1000)}"
    await chat(proxy, "my order is late", **{"Helicone-Request-Id": ticket_id})
    await settle(proxy.app)

    status, _ = await post(
        proxy,
        f"/v1/request/{ticket_id}/feedback",
        {"rating": False, "comment": "escalated to a human"},
    )

    assert status == 200
    detail = await proxy.get(f"/v1/request/{ticket_id}")
    data = (await detail.json())["data"]
    assert data["id"] == ticket_id
    assert data["feedback"]["rating"] is False
    assert data["feedback"]["comment"] == "escalated to a human"


@pytest.mark.parametrize(
    ("action", "rating"), [("accepted", True), ("edited", True), ("rejected", False)]
)
async def test_implicit_feedback_from_code_completion(
    proxy: Client, action: str, rating: bool
) -> None:
    request_id = await logged(proxy, "complete: def add(a, b):")
    positive = {"accepted": True, "edited": True, "rejected": False}[action]

    status, _ = await post(proxy, f"/v1/request/{request_id}/feedback", {"rating": positive})

    assert status == 200
    assert [(r["request_id"], r["rating"]) for r in await rated(proxy)] == [
        (request_id, int(rating))
    ]


async def test_hundred_feedback_posts_in_parallel_are_all_stored(proxy: Client) -> None:
    ids = [f"par-{i:03d}" for i in range(100)]
    for request_id in ids:
        await write_row(proxy, request_id)

    results = await asyncio.gather(
        *(
            post(proxy, f"/v1/request/{i}/feedback", {"rating": n % 2 == 0})
            for n, i in enumerate(ids)
        )
    )

    assert [status for status, _ in results] == [200] * 100
    assert [(r["request_id"], r["rating"]) for r in await rated(proxy)] == [
        (i, int(n % 2 == 0)) for n, i in enumerate(ids)
    ]


async def test_scores_and_feedback_on_the_same_request(proxy: Client) -> None:
    request_id = await logged(proxy, "grade me")

    status, body = await post(
        proxy,
        f"/v1/request/{request_id}/score",
        {"scores": {"accuracy": 92.5, "helpful": True, "toxic": False, "tokens": 3}},
    )
    assert status == 201
    assert body == {
        "data": {
            "request_id": request_id,
            "scores": {"accuracy": 92.5, "helpful": 1, "toxic": 0, "tokens": 3},
        },
        "error": None,
    }
    assert (await post(proxy, f"/v1/request/{request_id}/feedback", {"rating": True}))[0] == 200
    status, _ = await post(proxy, f"/v1/request/{request_id}/score", {"scores": {"accuracy": 0.1}})
    assert status == 201

    row = await stored(proxy.app, request_id)
    assert row["scores"] == {"accuracy": 0.1, "helpful": 1, "tokens": 3, "toxic": 0}
    assert row["feedback"]["rating"] is True


async def test_feedback_changed_twice_ends_with_the_last_value(proxy: Client) -> None:
    request_id = await logged(proxy)
    answers = []
    for rating in (True, False, True):
        status, body = await post(proxy, f"/v1/request/{request_id}/feedback", {"rating": rating})
        assert status == 200
        answers.append(body["data"])
        await asyncio.sleep(0.002)

    rows = await rated(proxy)
    assert len(rows) == 1
    assert rows[0]["rating"] == 1
    assert {a["created_at"] for a in answers} == {answers[0]["created_at"]}
    assert answers[0]["updated_at"] < answers[1]["updated_at"] < answers[2]["updated_at"]


async def test_feedback_while_the_stream_is_still_running(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    request_id = "stream-in-flight-1"
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "a long streamed answer please"}],
        },
        headers={"Helicone-Request-Id": request_id, "Sandbox-Fault": "chunk_delay_ms=150"},
    )
    assert response.status == 200
    await response.content.readany()

    status, body = await post(client, f"/v1/request/{request_id}/feedback", {"rating": True})
    assert status == 200, body
    assert await store_of(client.app).get_request(request_id) is None

    await response.read()
    row = await stored(client.app, request_id)
    assert row["is_stream"] is True
    assert row["outcome"] == "ok"
    assert row["feedback"]["rating"] is True


async def test_session_feedback_while_its_first_stream_is_still_running(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    response = await client.post(
        "/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "stream": True,
            "messages": [{"role": "user", "content": "the first turn of a session"}],
        },
        headers={"Helicone-Session-Id": "live-session", "Sandbox-Fault": "chunk_delay_ms=150"},
    )
    await response.content.readany()
    status, body = await post(client, "/v1/session/live-session/feedback", {"rating": False})
    assert status == 200, body
    assert not await store_of(client.app).session_exists("live-session")
    await response.read()
    await settle(client.app)
    assert await store_of(client.app).session_exists("live-session")


async def test_feedback_right_after_the_answer_is_never_lost(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    for n in range(20):
        request_id = await chat(client, f"question {n}")
        status, body = await post(client, f"/v1/request/{request_id}/feedback", {"rating": True})
        assert status == 200, body
    await settle(client.app)
    assert len(await rated(client)) == 20


async def test_feedback_waits_for_a_row_that_lands_after_500_ms(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(feedback={"wait_ms": 2000})

    async def land_later() -> None:
        await asyncio.sleep(0.5)
        await write_row(client, "other-replica-1")

    lander = asyncio.create_task(land_later())
    started = time.monotonic()
    status, body = await post(client, "/v1/request/other-replica-1/feedback", {"rating": False})
    waited = time.monotonic() - started
    await lander

    assert status == 200, body
    assert waited >= 0.45
    row = await stored(client.app, "other-replica-1")
    assert row["feedback"]["rating"] is False


async def test_unknown_id_is_404_after_the_wait(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"wait_ms": 300})
    started = time.monotonic()
    status, body = await post(client, "/v1/request/never-logged/feedback", {"rating": True})

    assert status == 404
    assert time.monotonic() - started >= 0.3
    assert body["data"] is None
    assert "never-logged" in body["error"] and "300 ms" in body["error"]
    assert await rated(client) == []


async def test_a_retry_under_its_id_keeps_feedback_and_scores(proxy: Client) -> None:
    headers = {"Helicone-Request-Id": "retry-1", "Helicone-Property-Try": "1"}
    request_id = await logged(proxy, "same question", **headers)
    await post(proxy, f"/v1/request/{request_id}/feedback", {"rating": True})
    await post(proxy, f"/v1/request/{request_id}/score", {"scores": {"ok": 1}})

    # An SDK retry resends the same body under the same id.
    await logged(proxy, "same question", **{**headers, "Helicone-Property-Try": "2"})

    row = await stored(proxy.app, "retry-1")
    assert row["properties"] == {"try": "2"}
    assert row["feedback"]["rating"] is True
    assert row["scores"] == {"ok": 1}
    assert row["warnings"] is None


# Session feedback, legacy and batch forms


async def test_changing_the_rating_without_a_comment_keeps_the_comment(proxy: Client) -> None:
    request_id = await logged(proxy, "keep my note")
    path = f"/v1/request/{request_id}/feedback"
    status, body = await post(proxy, path, {"rating": True, "comment": "solved it"})
    assert status == 200 and body["data"]["comment"] == "solved it"

    status, body = await post(proxy, path, {"rating": False})
    assert status == 200 and body["data"]["comment"] == "solved it"
    await post(proxy, "/v1/feedback", {"helicone-id": request_id, "rating": True})
    await post(
        proxy, "/v1/feedback/batch", {"items": [{"request_id": request_id, "rating": False}]}
    )
    assert [(r["rating"], r["comment"]) for r in await rated(proxy)] == [(0, "solved it")]

    status, body = await post(proxy, path, {"rating": False, "comment": None})
    assert status == 200 and body["data"]["comment"] is None
    assert [(r["rating"], r["comment"]) for r in await rated(proxy)] == [(0, None)]


async def test_a_batch_item_with_a_null_comment_clears_it(proxy: Client) -> None:
    request_id = await logged(proxy, "batch note")
    items = [{"request_id": request_id, "rating": True, "comment": "first"}]
    await post(proxy, "/v1/feedback/batch", {"items": items})
    items = [{"request_id": request_id, "rating": True, "comment": None}]
    status, body = await post(proxy, "/v1/feedback/batch", {"items": items})
    assert status == 200 and body["data"]["results"][0]["data"]["comment"] is None
    assert [r["comment"] for r in await rated(proxy)] == [None]


async def test_session_feedback_is_upserted(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    await logged(client, "step one", **{"Helicone-Session-Id": "sess-42"})

    first = await post(client, "/v1/session/sess-42/feedback", {"rating": True})
    second = await post(client, "/v1/session/sess-42/feedback", {"rating": False})
    unknown = await post(client, "/v1/session/sess-none/feedback", {"rating": True})

    assert first[0] == second[0] == 200
    assert second[1]["data"]["rating"] is False
    assert second[1]["data"]["created_at"] == first[1]["data"]["created_at"]
    assert unknown[0] == 404 and "sess-none" in unknown[1]["error"]
    rows = await store_of(client.app).fetch("SELECT session_id, rating FROM session_feedback")
    assert rows == [{"session_id": "sess-42", "rating": 0}]


async def test_legacy_feedback_body(proxy: Client) -> None:
    request_id = await logged(proxy)
    status, body = await post(proxy, "/v1/feedback", {"helicone-id": request_id, "rating": False})
    assert status == 200
    assert body["data"]["rating"] is False
    assert [(r["request_id"], r["rating"]) for r in await rated(proxy)] == [(request_id, 0)]


async def test_batch_answers_per_item_and_one_bad_item_sinks_nothing(
    make_proxy: ProxyFactory,
) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    good = await logged(client)
    items = [
        {"request_id": good, "rating": True, "comment": "great"},
        {"request_id": "nobody-1", "rating": True},
        {"request_id": good, "rating": "yes"},
        {"request_id": "bad id!", "rating": False},
        "not an object",
    ]

    status, body = await post(client, "/v1/feedback/batch", {"items": items})

    assert status == 200
    data = body["data"]
    assert (data["stored"], data["failed"]) == (1, 4)
    assert [r["status"] for r in data["results"]] == [200, 404, 400, 400, 400]
    assert [r["request_id"] for r in data["results"]] == [good, "nobody-1", good, "bad id!", None]
    assert data["results"][0]["data"]["comment"] == "great"
    assert "rating" in data["results"][2]["error"]
    assert [(r["request_id"], r["rating"]) for r in await rated(client)] == [(good, 1)]


async def test_batch_of_a_thousand_fits_and_one_more_is_refused(proxy: Client) -> None:
    await store_of(proxy.app).write_batch(
        [
            Row(id=f"b-{i}", created_at=utc_iso(time.time()), method="POST", path="/v1/x")
            for i in range(MAX_BATCH_ITEMS)
        ]
    )
    items = [{"request_id": f"b-{i}", "rating": i % 3 == 0} for i in range(MAX_BATCH_ITEMS)]

    over = await post(proxy, "/v1/feedback/batch", {"items": [*items, items[0]]})
    assert over[0] == 413 and str(MAX_BATCH_ITEMS) in over[1]["error"]
    assert await rated(proxy) == []

    status, body = await post(proxy, "/v1/feedback/batch", {"items": items})
    assert status == 200
    assert body["data"]["stored"] == MAX_BATCH_ITEMS
    assert len(await rated(proxy)) == MAX_BATCH_ITEMS


# Request detail


async def test_request_detail_has_feedback_scores_properties_and_session(proxy: Client) -> None:
    request_id = await logged(
        proxy,
        "detail please",
        **{
            "Helicone-Property-Feature": "Checkout",
            "Helicone-Session-Id": "s-9",
            "Helicone-Session-Path": "/cart/pay",
            "Helicone-Session-Name": "Checkout",
        },
    )
    await post(proxy, f"/v1/request/{request_id}/feedback", {"rating": True})
    await post(proxy, f"/v1/request/{request_id}/score", {"scores": {"relevance": 0.75}})
    await post(proxy, "/v1/session/s-9/feedback", {"rating": False})

    response = await proxy.get(f"/v1/request/{request_id}")

    assert response.status == 200
    data = (await response.json())["data"]
    assert data["properties"] == {"feature": "Checkout"}
    assert data["scores"] == {"relevance": 0.75}
    assert data["feedback"]["rating"] is True
    assert data["session"]["id"] == "s-9"
    assert data["session"]["path"] == "/cart/pay"
    assert data["session"]["feedback"]["rating"] is False
    assert "authorization" not in data["request_headers"]


async def test_request_detail_of_unknown_id_is_404(proxy: Client) -> None:
    response = await proxy.get("/v1/request/nope-1")
    assert response.status == 404
    assert await response.json() == {
        "data": None,
        "error": "no request with id 'nope-1' was logged",
    }


# Bad input: a clear 4xx, nothing stored


BAD_FEEDBACK = [
    pytest.param(b"rating=true", 400, "not valid JSON", id="form-encoded"),
    pytest.param(b"", 400, "empty", id="empty"),
    pytest.param(b"[true]", 400, "JSON object", id="array"),
    pytest.param(b"{}", 400, "rating: Field required", id="missing-rating"),
    pytest.param(b'{"rating": "yes"}', 400, "rating", id="rating-string"),
    pytest.param(b'{"rating": 1}', 400, "rating", id="rating-int"),
    pytest.param(b'{"rating": null}', 400, "rating", id="rating-null"),
    pytest.param(b'{"rating": true, "stars": 5}', 400, "stars: Extra inputs", id="unknown-field"),
    pytest.param(b'{"rating": true, "comment": 7}', 400, "comment", id="comment-int"),
    pytest.param(
        orjson.dumps({"rating": True, "comment": "x" * 4097}), 400, "4096 bytes", id="long-comment"
    ),
    pytest.param(
        orjson.dumps({"rating": True, "comment": "x" * MAX_BODY_BYTES}),
        413,
        "larger than",
        id="oversized",
    ),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_FEEDBACK)
async def test_bad_feedback_body_is_refused_and_changes_nothing(
    proxy: Client, body: bytes, status: int, message: str
) -> None:
    request_id = await logged(proxy)
    answer = await post(proxy, f"/v1/request/{request_id}/feedback", body)
    assert answer[0] == status
    assert answer[1]["data"] is None and message in answer[1]["error"]
    assert await rated(proxy) == []


@pytest.mark.parametrize(
    "path", ["/v1/request/bad%20id/feedback", "/v1/request/-dash-first/feedback"]
)
async def test_ids_outside_the_alphabet_are_400(proxy: Client, path: str) -> None:
    status, body = await post(proxy, path, {"rating": True})
    assert status == 400
    assert "[A-Za-z0-9._:@-]" in body["error"]


async def test_legacy_body_with_a_bad_id_is_400(proxy: Client) -> None:
    status, body = await post(proxy, "/v1/feedback", {"helicone-id": "a b", "rating": True})
    assert status == 400 and "request id" in body["error"]


BAD_SCORES = [
    pytest.param(b'{"scores": {"a": "high"}}', "not a string", id="string"),
    pytest.param(b'{"scores": {"a": null}}', "not null", id="null"),
    pytest.param(b'{"scores": {"a": [1]}}', "not an array", id="array"),
    pytest.param(b'{"scores": {"a": NaN}}', "not valid JSON", id="nan"),
    pytest.param(b'{"scores": {"a": Infinity}}', "not valid JSON", id="infinity"),
    pytest.param(b'{"scores": {"a": 1e999}}', "not valid JSON", id="overflow"),
    pytest.param(b'{"scores": {"a": 9007199254740993}}', "2**53", id="inexact-int"),
    pytest.param(b'{"scores": {"": 1}}', "at least 1 character", id="empty-name"),
    pytest.param(orjson.dumps({"scores": {"n" * 129: 1}}), "at most 128", id="long-name"),
    pytest.param(b'{"scores": [1, 2]}', "scores", id="scores-array"),
    pytest.param(b'{"score": 1, "name": "x"}', "scores: Field required", id="evals-shape"),
]


@pytest.mark.parametrize(("body", "message"), BAD_SCORES)
async def test_bad_scores_are_400_and_change_nothing(
    proxy: Client, body: bytes, message: str
) -> None:
    request_id = await logged(proxy)
    status, answer = await post(proxy, f"/v1/request/{request_id}/score", body)
    assert status == 400
    assert message in answer["error"]
    assert await store_of(proxy.app).fetch("SELECT * FROM scores") == []


async def test_other_methods_are_405_and_never_forwarded(proxy: Client, upstream: Upstream) -> None:
    response = await proxy.get("/v1/request/abc/feedback")
    assert response.status == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert (await response.json())["error"].startswith("GET is not allowed")
    assert upstream.received == []


async def test_put_property_sets_a_property_of_a_logged_request(
    proxy: Client, upstream: Upstream
) -> None:
    request_id = await logged(proxy, "tag me", **{"Helicone-Property-App": "chat"})
    response = await proxy.put(
        f"/v1/request/{request_id}/property", json={"key": "Environment", "value": "production"}
    )
    assert response.status == 200
    assert await response.json() == {"data": None, "error": None}
    await proxy.put(f"/v1/request/{request_id}/property", json={"key": "app", "value": "search"})
    row = await stored(proxy.app, request_id)
    assert row["properties"] == {"app": "search", "environment": "production"}
    found = await proxy.post(
        "/v1/request/query",
        json={"filter": {"properties": {"environment": {"equals": "production"}}}},
    )
    assert [r["request_id"] for r in (await found.json())["data"]] == [request_id]
    assert len(upstream.received) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": "k"}, 400),
        ({"key": "", "value": "v"}, 400),
        ({"key": "k", "value": 3}, 400),
        ({"key": "k", "value": "x" * 1025}, 400),
    ],
)
async def test_put_property_refuses_bad_bodies(
    proxy: Client, body: dict[str, Any], status: int
) -> None:
    request_id = await logged(proxy, "bad property")
    response = await proxy.put(f"/v1/request/{request_id}/property", json=body)
    assert response.status == status
    assert (await stored(proxy.app, request_id))["properties"] == {}


async def test_put_property_on_an_unknown_request_is_404(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"wait_ms": 0})
    response = await client.put("/v1/request/never-1/property", json={"key": "k", "value": "v"})
    assert response.status == 404


# Proxy keys and CORS


async def test_proxy_key_is_required_when_configured(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(auth={"proxy_keys": ["k-123"]}, feedback={"wait_ms": 0})
    await write_row(client, "keyed-1")
    path = "/v1/request/keyed-1/feedback"

    missing = await post(client, path, {"rating": True})
    wrong = await post(client, path, {"rating": True}, Authorization="Bearer k-999")
    right = await post(client, path, {"rating": True}, Authorization="Bearer k-123")
    detail = await client.get("/v1/request/keyed-1")

    assert missing[0] == wrong[0] == 401
    assert "Authorization: Bearer" in missing[1]["error"]
    assert wrong[1] == {"data": None, "error": "invalid proxy key"}
    assert right[0] == 200
    assert detail.status == 401
    assert len(await rated(client)) == 1


async def test_cors_preflight_and_headers_for_allowed_origins(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(
        auth={"proxy_keys": ["k-1"]},
        feedback={"wait_ms": 0, "cors_origins": ["https://app.example"]},
    )
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }

    allowed = await client.options("/v1/request/x-1/feedback", headers=preflight)
    refused = await client.options(
        "/v1/request/x-1/feedback", headers={**preflight, "Origin": "https://evil.example"}
    )
    not_found = await client.post(
        "/v1/request/x-1/feedback",
        json={"rating": True},
        headers={"Origin": "https://app.example", "Authorization": "Bearer k-1"},
    )
    unauthorised = await client.post(
        "/v1/request/x-1/feedback", json={"rating": True}, headers={"Origin": "https://app.example"}
    )

    assert allowed.status == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert allowed.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert allowed.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert refused.status == 403
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert not_found.status == 404
    assert not_found.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert unauthorised.status == 401
    assert unauthorised.headers["Access-Control-Allow-Origin"] == "https://app.example"


async def test_cors_wildcard_allows_any_origin(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(feedback={"cors_origins": ["*"]})
    await write_row(client, "w-1")
    response = await client.post(
        "/v1/request/w-1/score",
        json={"scores": {"x": 1}},
        headers={"Origin": "http://localhost:5173"},
    )
    assert response.status == 201
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


async def test_no_cors_headers_without_configured_origins(proxy: Client) -> None:
    response = await proxy.options(
        "/v1/feedback",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status == 403
    assert "Access-Control-Allow-Origin" not in response.headers


# Terminal


async def _seed(db: Path, request_id: str) -> None:
    store = SQLiteStore(str(db))
    await store.open()
    await store.write_batch(
        [Row(id=request_id, created_at=utc_iso(time.time()), method="POST", path="/v1/x")]
    )
    await store.close()


async def _feedback_row(db: Path) -> list[dict[str, Any]]:
    store = SQLiteStore(str(db))
    await store.open()
    rows = await store.fetch("SELECT request_id, rating, comment FROM feedback")
    await store.close()
    return rows


def test_cli_feedback_up_then_down(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    asyncio.run(_seed(db, "cli-1"))

    assert main(["feedback", "cli-1", "up", "--db", str(db)]) == 0
    assert main(["feedback", "cli-1", "down", "--comment", "wrong total", "--db", str(db)]) == 0

    assert asyncio.run(_feedback_row(db)) == [
        {"request_id": "cli-1", "rating": 0, "comment": "wrong total"}
    ]
    assert "cli-1: down" in capsys.readouterr().out


def test_cli_feedback_keeps_the_comment_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cli.db"
    asyncio.run(_seed(db, "cli-2"))
    assert main(["feedback", "cli-2", "up", "--comment", "spot on", "--db", str(db)]) == 0
    assert main(["feedback", "cli-2", "down", "--db", str(db)]) == 0
    assert asyncio.run(_feedback_row(db)) == [
        {"request_id": "cli-2", "rating": 0, "comment": "spot on"}
    ]
    assert main(["feedback", "cli-2", "down", "--clear-comment", "--db", str(db)]) == 0
    assert asyncio.run(_feedback_row(db)) == [{"request_id": "cli-2", "rating": 0, "comment": None}]


@pytest.mark.parametrize(("request_id", "code"), [("cli-missing", 1), ("bad id", 2)])
def test_cli_feedback_refuses_unknown_and_invalid_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], request_id: str, code: int
) -> None:
    db = tmp_path / "cli.db"
    assert main(["feedback", request_id, "up", "--db", str(db)]) == code
    assert "relaylog:" in capsys.readouterr().err
    assert asyncio.run(_feedback_row(db)) == []
