"""/metrics in Prometheus format: requests, latency, feedback calls, queue depth, writes, drops."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from proxy.state import STORE
from storage.errors import StoreError
from tests.helpers import Client, ProxyFactory, parse_metrics, settle

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "count me"}]}


async def metrics_of(client: Client) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(await response.text())


async def test_requests_are_counted_by_status_and_outcome(proxy: Client) -> None:
    for _ in range(2):
        assert (await proxy.post("/v1/chat/completions", json=CHAT)).status == 200
    limited = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Sandbox-Fault": "status=429"}
    )
    assert limited.status == 429
    refused = await proxy.post(
        "/v1/chat/completions", json=CHAT, headers={"Helicone-Target-Url": "https://x.example"}
    )
    assert refused.status == 400
    await settle(proxy.app)
    m = await metrics_of(proxy)
    assert m['relaylog_requests_total{outcome="ok",status="200"}'] == 2
    assert m['relaylog_requests_total{outcome="upstream_error",status="429"}'] == 1
    assert m['relaylog_requests_total{outcome="rejected",status="400"}'] == 1
    assert m["relaylog_request_duration_seconds_count"] == 4
    assert m['relaylog_request_duration_seconds_bucket{le="+Inf"}'] == 4
    assert m["relaylog_request_duration_seconds_sum"] > 0
    assert m["relaylog_log_rows_written_total"] == 4
    assert m["relaylog_log_queue_depth"] == 0
    assert m["relaylog_log_rows_dropped_total"] == 0
    assert m["relaylog_log_queue_capacity"] == 50_000


async def test_feedback_calls_are_counted_by_endpoint_and_status(
    make_proxy: ProxyFactory,
) -> None:
    proxy = await make_proxy(feedback={"wait_ms": 0})
    answer = await proxy.post("/v1/chat/completions", json=CHAT)
    request_id = answer.headers["helicone-id"]
    await settle(proxy.app)
    ok = await proxy.post(f"/v1/request/{request_id}/feedback", json={"rating": True})
    assert ok.status == 200
    unknown = await proxy.post("/v1/request/nobody/feedback", json={"rating": True})
    assert unknown.status == 404
    bad = await proxy.post(f"/v1/request/{request_id}/score", json={"scores": "high"})
    assert bad.status == 400
    scored = await proxy.post(f"/v1/request/{request_id}/score", json={"scores": {"a": 1}})
    assert scored.status == 201
    m = await metrics_of(proxy)
    assert m['relaylog_feedback_requests_total{endpoint="request_feedback",status="200"}'] == 1
    assert m['relaylog_feedback_requests_total{endpoint="request_feedback",status="404"}'] == 1
    assert m['relaylog_feedback_requests_total{endpoint="request_score",status="400"}'] == 1
    assert m['relaylog_feedback_requests_total{endpoint="request_score",status="201"}'] == 1
    # Feedback calls are not forwarded requests.
    assert m['relaylog_requests_total{outcome="ok",status="200"}'] == 1


async def test_in_flight_and_queue_depth_are_read_at_scrape_time(
    proxy: Client, monkeypatch: Any
) -> None:
    slow = asyncio.create_task(
        proxy.post("/v1/chat/completions", json=CHAT, headers={"Sandbox-Fault": "delay_ms=600"})
    )
    await asyncio.sleep(0.3)
    assert (await metrics_of(proxy))["relaylog_requests_in_flight"] == 1

    async def locked(rows: Any) -> None:
        raise StoreError("database is locked")

    monkeypatch.setattr(proxy.app[STORE], "write_batch", locked)
    assert (await slow).status == 200
    await asyncio.sleep(0.2)
    m = await metrics_of(proxy)
    assert m["relaylog_requests_in_flight"] == 0
    assert m["relaylog_log_queue_depth"] == 1
    assert m["relaylog_log_failed_commits_total"] >= 1
    monkeypatch.undo()
    await settle(proxy.app)
    m = await metrics_of(proxy)
    assert m["relaylog_log_queue_depth"] == 0
    assert m["relaylog_log_rows_written_total"] == 1


async def test_each_app_has_its_own_registry(make_proxy: ProxyFactory, tmp_path: Path) -> None:
    first = await make_proxy()
    second = await make_proxy(store={"db": str(tmp_path / "second.db")})
    for _ in range(3):
        await first.post("/v1/chat/completions", json=CHAT)
    await second.post("/v1/chat/completions", json=CHAT)
    assert (await metrics_of(first))['relaylog_requests_total{outcome="ok",status="200"}'] == 3
    assert (await metrics_of(second))['relaylog_requests_total{outcome="ok",status="200"}'] == 1


async def test_ratings_and_scores_are_counted(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(feedback={"wait_ms": 0})
    answer = await proxy.post("/v1/chat/completions", json=CHAT)
    request_id = answer.headers["helicone-id"]
    await settle(proxy.app)
    await proxy.post(f"/v1/request/{request_id}/feedback", json={"rating": True})
    await proxy.post("/v1/feedback", json={"helicone-id": request_id, "rating": False})
    items = [{"request_id": request_id, "rating": False}, {"request_id": "nope", "rating": True}]
    await proxy.post("/v1/feedback/batch", json={"items": items})
    await proxy.post(f"/v1/request/{request_id}/score", json={"scores": {"a": 1, "b": True}})
    await proxy.post(f"/v1/request/{request_id}/score", json={"scores": {"a": "x"}})
    m = await metrics_of(proxy)
    assert m['relaylog_feedback_total{rating="positive"}'] == 1
    assert m['relaylog_feedback_total{rating="negative"}'] == 2
    assert m["relaylog_scores_total"] == 2
