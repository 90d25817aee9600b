"""Datasets: Helicone's /v1/helicone-dataset routes, export by dataset, `relaylog dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.cli import main
from tests.helpers import Client, ids_of
from tests.logbook import IDS, filled_sqlite


async def call(client: Client, path: str, body: Any, status: int = 200) -> Any:
    response = await client.post(path, json=body)
    payload = await response.json()
    assert response.status == status, payload
    return payload["data"] if status < 400 else payload["error"]


async def test_create_list_change_export_delete(logged: Client) -> None:
    created = await call(
        logged,
        "/v1/helicone-dataset",
        {"datasetName": "best", "requestIds": ["r1", "r2", "nope"], "meta": {}},
        201,
    )
    assert created["name"] == "best" and created["unknown"] == ["nope"]
    assert (created["added"], created["removed"], created["rows"]) == (2, 0, 2)
    dataset_id = created["datasetId"]

    from_filter = await call(
        logged,
        "/v1/helicone-dataset",
        {
            "datasetName": "liked",
            "filter": {"feedback": {"rating": {"equals": True}}},
            "description": "thumbs up",
        },
        201,
    )
    assert from_filter["rows"] == 2

    listed = await call(logged, "/v1/helicone-dataset/query", {})
    assert [(d["name"], d["requests_count"]) for d in listed] == [("best", 2), ("liked", 2)]
    only = await call(logged, "/v1/helicone-dataset/query", {"datasetIds": [dataset_id]})
    assert [d["name"] for d in only] == ["best"]

    changed = await call(
        logged,
        f"/v1/helicone-dataset/{dataset_id}/mutate",
        {"addRequests": ["r5", "r1"], "removeRequests": ["r2"]},
    )
    assert (changed["added"], changed["removed"], changed["rows"]) == (1, 1, 2)
    by_name = await call(
        logged,
        "/v1/helicone-dataset/best/mutate",
        {"addFilter": {"request": {"user_id": {"equals": "bob"}}}},
    )
    assert (by_name["added"], by_name["rows"]) == (2, 4)

    response = await logged.post(
        "/v1/request/query",
        json={"filter": {"dataset": {"name": {"equals": "best"}}}, "sort": {"created_at": "asc"}},
    )
    assert ids_of(await response.json()) == ["r1", "r2", "r5", "r6"]
    response = await logged.get("/v1/export", params={"dataset": "best", "format": "openai-chat"})
    assert len((await response.read()).splitlines()) == 2  # r1 and r2 are chat completions

    deleted = await call(logged, f"/v1/helicone-dataset/{dataset_id}/delete", {})
    assert deleted == {"datasetId": dataset_id, "deleted": True}
    assert [d["name"] for d in await call(logged, "/v1/helicone-dataset/query", {})] == ["liked"]
    response = await logged.post("/v1/request/query", json={"limit": 1000})
    assert len(ids_of(await response.json())) == len(IDS)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/helicone-dataset", {"datasetName": ""}, 400, "datasetName"),
        ("/v1/helicone-dataset", {"requestIds": []}, 400, "datasetName"),
        (
            "/v1/helicone-dataset",
            {"datasetName": "x", "requestIds": ["a"] * 10_001},
            400,
            "requestIds",
        ),
        ("/v1/helicone-dataset", {"datasetName": "x", "filter": {"bad": {}}}, 400, "filter.bad"),
        ("/v1/helicone-dataset/nope/mutate", {"addRequests": ["r1"]}, 404, "no dataset"),
        ("/v1/helicone-dataset/nope/delete", {}, 404, "no dataset"),
    ],
)
async def test_bad_dataset_requests(
    logged: Client, path: str, body: Any, status: int, message: str
) -> None:
    assert message in await call(logged, path, body, status)


async def test_names_are_unique(logged: Client) -> None:
    await call(logged, "/v1/helicone-dataset", {"datasetName": "once"}, 201)
    error = await call(logged, "/v1/helicone-dataset", {"datasetName": "once"}, 409)
    assert "exists" in error


def test_dataset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    assert main(["dataset", "create", "good", "--db", db, "--feedback", "up", "--id", "r2"]) == 0
    assert "dataset good: 3 rows (+3 -0)" in capsys.readouterr().out
    assert main(["dataset", "remove", "good", "r2", "--db", db]) == 0
    assert "dataset good: 2 rows (+0 -1)" in capsys.readouterr().out
    # All or nothing: an unknown id leaves the dataset as it was.
    assert main(["dataset", "add", "good", "r6", "missing", "--db", db]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "missing" in captured.err and "not changed" in captured.err
    assert main(["dataset", "add", "good", "r6", "--db", db]) == 0
    assert "3 rows (+1 -0)" in capsys.readouterr().out
    assert main(["dataset", "list", "--db", db, "--json"]) == 0
    [listed] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["name"], listed["requests_count"]) == ("good", 3)
    assert main(["export", "--db", db, "--dataset", "good"]) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["r1", "r5", "r6"]
    assert main(["dataset", "create", "good", "--db", db]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["dataset", "delete", "good", "--db", db]) == 0
    assert main(["dataset", "list", "--db", db]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["name", "rows", "created_at", "id"]
