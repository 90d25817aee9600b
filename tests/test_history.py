"""Reused Helicone-Request-Ids: a retry replaces its exchange, a new call moves it to history."""

from __future__ import annotations

from typing import Any

from proxy.gateway.exchange import body_hash
from storage.history import replaced_calls
from storage.models import Row
from tests.helpers import Client, ProxyFactory, stored


async def call(proxy: Client, text: str, request_id: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}
    answer = await proxy.post(
        "/v1/chat/completions", json=body, headers={"Helicone-Request-Id": request_id}
    )
    assert answer.status == 200


async def data(proxy: Client, method: str, path: str, body: Any = None) -> Any:
    answer = await proxy.request(method, path, json=body)
    assert answer.status in (200, 201), await answer.text()
    return (await answer.json())["data"]


async def test_a_different_call_under_a_used_id_keeps_the_first_with_its_feedback(
    make_proxy: ProxyFactory, store_url: str
) -> None:
    proxy = await make_proxy(store={"db": store_url})
    await call(proxy, "what is 2+2?", "reused-1")
    await data(proxy, "POST", "/v1/request/reused-1/feedback", {"rating": True, "comment": "right"})
    await data(proxy, "POST", "/v1/request/reused-1/score", {"scores": {"accuracy": 95}})
    await data(
        proxy, "POST", "/v1/helicone-dataset", {"datasetName": "best", "requestIds": ["reused-1"]}
    )

    await call(proxy, "write a poem", "reused-1")

    row = await stored(proxy.app, "reused-1")
    assert row["request_body"]["messages"][0]["content"] == "write a poem"
    # The rating was given for the first answer: the new exchange starts unrated.
    assert row["feedback"] is None and row["scores"] == {}
    assert any("used before for a different request" in w for w in row["warnings"])
    earlier = await data(proxy, "GET", "/v1/request/reused-1/history")
    assert len(earlier) == 1
    first = earlier[0]
    assert first["seq"] == 1 and first["replaced_at"]
    assert first["request_body"]["messages"][0]["content"] == "what is 2+2?"
    assert first["response_body"]["choices"][0]["message"]["content"] == "Echo: what is 2+2?"
    assert first["feedback"]["rating"] is True and first["feedback"]["comment"] == "right"
    assert first["scores"] == {"accuracy": 95.0}
    assert first["datasets"] == ["best"]
    # Exports, datasets and stats refer to what was rated, never to the new answer.
    rated = await data(
        proxy,
        "POST",
        "/v1/request/query",
        {"filter": {"request_response_rmt": {"helicone-score-feedback": {"equals": True}}}},
    )
    assert rated == []
    listed = await data(proxy, "POST", "/v1/helicone-dataset/query", {})
    assert [(d["name"], d["requests_count"]) for d in listed] == [("best", 0)]
    totals = await data(proxy, "POST", "/v1/request/stats", {"filter": "all"})
    assert totals["requests"] == 1
    assert totals["feedback"]["count"] == 0 and totals["scores"] == {}

    # A third call moves the second one; a retry of the third replaces it in place.
    await call(proxy, "and a limerick", "reused-1")
    await call(proxy, "and a limerick", "reused-1")
    earlier = await data(proxy, "GET", "/v1/request/reused-1/history")
    assert [e["request_body"]["messages"][0]["content"] for e in earlier] == [
        "what is 2+2?",
        "write a poem",
    ]


async def test_history_of_a_request_without_one_is_empty_and_of_an_unknown_id_404(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy()
    await call(proxy, "once", "only-once")
    assert await data(proxy, "GET", "/v1/request/only-once/history") == []
    answer = await proxy.get("/v1/request/never-seen/history")
    assert answer.status == 404
    assert "never-seen" in (await answer.json())["error"]


def _row(request_id: str, body: bytes | None) -> Row:
    return Row(
        id=request_id,
        created_at="2026-01-01T00:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        request_hash=body_hash(body),
    )


def test_which_rows_a_batch_displaces() -> None:
    first, retry, other = _row("a", b"1"), _row("a", b"1"), _row("a", b"2")
    # Stored "a" had body 1: a retry displaces nothing, a different body displaces the stored row.
    assert replaced_calls([retry], {"a": body_hash(b"1")}) == []
    assert replaced_calls([other], {"a": body_hash(b"1")}) == ["a"]
    # Within one batch the earlier row of the id is what a different call displaces.
    assert replaced_calls([first, other], {}) == [first]
    assert replaced_calls([first, retry], {}) == []
    # Rows logged before bodies were hashed, and calls without a body, count as the same call.
    assert replaced_calls([other], {"a": None}) == []
    assert replaced_calls([_row("a", None)], {"a": body_hash(b"1")}) == []
    assert replaced_calls([_row("b", b"2")], {"a": body_hash(b"1")}) == []
