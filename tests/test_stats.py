"""POST /v1/request/stats and `relaylog stats`: totals and groups over a filter."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.cli import main
from proxy.state import STORE
from storage import Row
from storage.query.filters import compile_filter
from tests.helpers import Client, ProxyFactory
from tests.logbook import filled_sqlite


async def stats(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/request/stats", json=body)
    payload = await response.json()
    assert response.status == 200, payload
    data: dict[str, Any] = payload["data"]
    return data


async def test_totals(logged: Client) -> None:
    data = await stats(logged, {})
    assert "groups" not in data
    assert data["requests"] == 6
    assert data["errors"] == 2
    assert data["error_rate"] == pytest.approx(1 / 3, abs=1e-6)
    # Latencies 30, 50, 100, 250, 900 (one row has none): nearest-rank percentiles.
    assert data["latency_ms"] == {
        "avg": 266.0,
        "p50": 100.0,
        "p90": 900.0,
        "p95": 900.0,
        "p99": 900.0,
    }
    assert data["tokens"] == {"prompt": 158, "completion": 115, "total": 273}
    assert data["cost_usd"] == pytest.approx(0.01100016)
    assert data["feedback"] == {
        "count": 3,
        "positive": 2,
        "negative": 1,
        "positive_rate": pytest.approx(2 / 3, abs=1e-6),
    }
    assert data["scores"] == {
        "accuracy": {"count": 3, "avg": pytest.approx(235 / 3, abs=1e-5), "min": 60.0, "max": 95.0},
        "helpful": {"count": 2, "avg": 0.5, "min": 0.0, "max": 1.0},
    }


async def test_grouped_by_model(logged: Client) -> None:
    data = await stats(logged, {"group_by": "model"})
    assert [g["key"] for g in data["groups"]] == [
        {"model": "gpt-4o"},
        {"model": "gpt-4o-mini"},
        {"model": "my-local-llama"},
        {"model": "text-embedding-3-small"},
        {"model": None},
    ]
    mini = data["groups"][1]
    assert mini["requests"] == 2 and mini["errors"] == 1
    assert mini["latency_ms"]["avg"] == 75.0 and mini["latency_ms"]["p50"] == 50.0
    assert mini["feedback"]["positive_rate"] == 1.0
    assert mini["scores"]["accuracy"]["avg"] == 95.0
    assert data["groups"][4]["latency_ms"]["p50"] is None
    assert sum(g["requests"] for g in data["groups"]) == data["requests"] == 6


@pytest.mark.parametrize(
    ("group_by", "keys", "requests"),
    [
        (["day"], [{"day": "2024-05-01"}, {"day": "2024-05-02"}, {"day": "2024-05-03"}], [2, 2, 2]),
        (
            ["user"],
            [{"user": "alice"}, {"user": "bob"}, {"user": "carol"}, {"user": None}],
            [2, 2, 1, 1],
        ),
        (
            ["property:App"],
            [
                {"property:App": "Search Engine"},
                {"property:App": "chat"},
                {"property:App": "search"},
                {"property:App": None},
            ],
            [1, 3, 1, 1],
        ),
        (
            ["day", "outcome"],
            [
                {"day": "2024-05-01", "outcome": "ok"},
                {"day": "2024-05-02", "outcome": "rejected"},
                {"day": "2024-05-02", "outcome": "upstream_error"},
                {"day": "2024-05-03", "outcome": "ok"},
            ],
            [2, 1, 1, 2],
        ),
    ],
)
async def test_grouped(
    logged: Client, group_by: list[str], keys: list[dict[str, Any]], requests: list[int]
) -> None:
    data = await stats(logged, {"group_by": group_by})
    assert [g["key"] for g in data["groups"]] == keys
    assert [g["requests"] for g in data["groups"]] == requests


async def test_feedback_by_day_and_model_under_a_filter(logged: Client) -> None:
    data = await stats(
        logged,
        {"filter": {"feedback": {"rating": {"not-equals": "null"}}}, "group_by": ["day", "model"]},
    )
    assert data["requests"] == 3
    assert [
        (g["key"]["day"], g["key"]["model"], g["feedback"]["positive"]) for g in data["groups"]
    ] == [
        ("2024-05-01", "gpt-4o", 0),
        ("2024-05-01", "gpt-4o-mini", 1),
        ("2024-05-03", "text-embedding-3-small", 1),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"group_by": ["nope"]}, "cannot group by 'nope'"),
        ({"group_by": ["property:"]}, "cannot group by 'property:'"),
        ({"group_by": ["property:a", "property:b"]}, "at most one property"),
        ({"group_by": ["day", "day"]}, "once"),
        ({"group_by": ["day", "model", "user", "path"]}, "group_by"),
        ({"filter": {"request": {"nope": {"equals": 1}}}}, "filter.request.nope"),
    ],
)
async def test_bad_stats_requests_get_400(
    logged: Client, body: dict[str, Any], message: str
) -> None:
    response = await logged.post("/v1/request/stats", json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_percentiles_are_estimated_within_a_bucket(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    rng = random.Random(3)
    latencies = [rng.lognormvariate(6, 1) for _ in range(500)]
    await client.app[STORE].write_batch(
        [
            Row(
                id=f"q{i}",
                created_at="2024-06-01T00:00:00.000Z",
                method="POST",
                path="/x",
                latency_ms=value,
            )
            for i, value in enumerate(latencies)
        ]
    )
    data = await stats(client, {})
    ordered = sorted(latencies)
    for p in (50, 90, 95, 99):
        exact = ordered[math.ceil(p / 100 * len(ordered)) - 1]
        assert data["latency_ms"][f"p{p}"] == pytest.approx(exact, rel=0.1)
    assert data["latency_ms"]["avg"] == pytest.approx(sum(latencies) / 500, abs=1e-3)


def test_stats_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    assert main(["stats", "--db", db, "--json"]) == 0
    totals = orjson.loads(capsys.readouterr().out)
    assert totals["requests"] == 6 and totals["feedback"]["count"] == 3
    assert main(["stats", "--db", db, "--json", "--feedback", "up", "--by", "model"]) == 0
    data = orjson.loads(capsys.readouterr().out)
    assert data["requests"] == 2
    assert [g["key"]["model"] for g in data["groups"]] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert main(["stats", "--db", db, "--by", "day", "--property", "app=chat"]) == 0
    out = capsys.readouterr().out
    assert "requests 3  errors 1" in out
    assert "2024-05-02" in out and "p50 ms" in out
    assert main(["stats", "--db", db, "--by", "weekday"]) == 2
    assert "cannot group by 'weekday'" in capsys.readouterr().err


async def test_session_ratings_in_totals_and_groups(logged: Client) -> None:
    data = await stats(logged, {})
    assert data["session_feedback"] == {
        "count": 2,
        "positive": 1,
        "negative": 1,
        "positive_rate": 0.5,
    }
    grouped = await stats(logged, {"group_by": "user"})
    sessions = {g["key"]["user"]: g["session_feedback"] for g in grouped["groups"]}
    assert {user: (s["count"], s["positive"]) for user, s in sessions.items()} == {
        "alice": (1, 1),
        "bob": (2, 1),
        "carol": (1, 0),
        None: (0, 0),
    }
    only_s2 = await stats(logged, {"filter": {"request": {"session_id": {"equals": "s2"}}}})
    assert (only_s2["session_feedback"]["count"], only_s2["session_feedback"]["positive"]) == (1, 0)


def test_stats_command_prints_session_ratings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    assert main(["stats", "--db", db]) == 0
    assert "session feedback  2 rated, 1 up, 1 down (50.0% positive)" in capsys.readouterr().out


# Filters whose session totals are checked against every matching request's session: none,
# the request's own columns, the session's rating itself (the filter's own session_feedback
# alias inside the count's), feedback, a property and a time range.
SESSION_FILTERS: list[Any] = [
    {},
    {"filter": {"request": {"model": {"equals": "gpt-4o"}}}},
    {"filter": {"request": {"user_id": {"equals": "alice"}}}},
    {"filter": {"session_feedback": {"rating": {"equals": True}}}},
    {"filter": {"session_feedback": {"rating": {"equals": False}}}},
    {"filter": {"feedback": {"rating": {"equals": True}}}},
    {"filter": {"properties": {"app": {"equals": "search"}}}},
    {"filter": {"request": {"created_at": {"gte": "2024-05-02T00:00:00Z"}}}},
    {"filter": {"request": {"outcome": {"equals": "nothing"}}}},
]


@pytest.mark.parametrize("body", SESSION_FILTERS)
async def test_session_totals_count_each_rated_session_of_a_matching_request(
    logged: Client, body: dict[str, Any]
) -> None:
    data = await stats(logged, body)
    condition = compile_filter(body.get("filter", "all"))
    expected = await logged.app[STORE].fetch(
        "SELECT COUNT(DISTINCT sf.session_id) AS rated, "
        "COUNT(DISTINCT CASE WHEN sf.rating = 1 THEN sf.session_id END) AS positive "
        "FROM session_feedback sf JOIN requests r ON r.session_id = sf.session_id "
        f"WHERE {condition.sql}",
        condition.params,
    )
    rated, positive = int(expected[0]["rated"]), int(expected[0]["positive"] or 0)
    assert (data["session_feedback"]["count"], data["session_feedback"]["positive"]) == (
        rated,
        positive,
    )
    assert data["session_feedback"]["negative"] == rated - positive
