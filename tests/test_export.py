"""GET /v1/export and `relaylog export`: jsonl rows, OpenAI fine-tuning lines, csv."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from proxy.cli import main
from proxy.cli.output import Progress
from proxy.state import STORE
from storage.errors import StoreError
from storage.models import ROW_COLUMNS
from storage.query import export
from storage.query.export import CSV_COLUMNS
from tests.helpers import Client, ProxyFactory, settle
from tests.logbook import IDS, fill, filled_sqlite

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
# What OpenAI's chat fine-tuning format allows on each role's messages.
MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "weight"},
    "tool": {"role", "content", "tool_call_id"},
}


def check_fine_tuning_example(line: bytes) -> dict[str, Any]:
    """One line of a chat fine-tuning file as OpenAI's upload validation expects it."""
    example = orjson.loads(line)
    assert set(example) <= {"messages", "tools", "parallel_tool_calls"}
    messages = example["messages"]
    assert len(messages) >= 2 and messages[-1]["role"] == "assistant"
    for message in messages:
        role = message["role"]
        assert role in MESSAGE_KEYS and set(message) <= MESSAGE_KEYS[role], message
        if role == "assistant":
            assert isinstance(message.get("content"), str) or message.get("tool_calls")
        else:
            assert isinstance(message["content"], str | list)
        if role == "tool":
            assert isinstance(message["tool_call_id"], str)
        for call in message.get("tool_calls", []):
            assert set(call) == {"id", "type", "function"} and call["type"] == "function"
            assert isinstance(call["id"], str) and isinstance(call["function"]["name"], str)
            assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
    for tool in example.get("tools", []):
        assert tool["type"] == "function" and tool["function"]["name"]
    return dict(example)


async def chat(client: Client, body: dict[str, Any], **headers: str) -> str:
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    await response.read()
    return response.headers["helicone-id"]


@pytest.fixture
async def traffic(make_proxy: ProxyFactory) -> Client:
    """Real calls through relaylog to the sandbox: chats, a tool call, a stream, failures."""
    client = await make_proxy()
    model = "gpt-4o-mini"
    await chat(
        client,
        {
            "model": model,
            "messages": [
                {"role": "developer", "content": "Answer briefly."},
                {"role": "user", "content": "What is relaylog?"},
            ],
        },
        **{"Helicone-Property-Prompt-Version": "v2"},
    )
    await chat(
        client,
        {
            "model": model,
            "messages": [{"role": "user", "content": "tool: weather in Paris"}],
            "tools": [WEATHER_TOOL],
            "parallel_tool_calls": False,
        },
    )
    await chat(
        client,
        {
            "model": model,
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "-3C, snow"},
            ],
            "tools": [WEATHER_TOOL],
        },
    )
    await chat(
        client,
        {"model": model, "stream": True, "messages": [{"role": "user", "content": "stream me"}]},
    )
    await chat(
        client,
        {"model": model, "messages": [{"role": "user", "content": "fail"}]},
        **{"Sandbox-Fault": "status=500"},
    )
    response = await client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "embed me"}
    )
    assert response.status == 200
    await settle(client.app)
    return client


async def test_openai_chat_lines_are_valid_fine_tuning_examples(traffic: Client) -> None:
    response = await traffic.get("/v1/export", params={"format": "openai-chat"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    assert "relaylog-export.jsonl" in response.headers["Content-Disposition"]
    examples = [check_fine_tuning_example(line) for line in (await response.read()).splitlines()]
    assert len(examples) == 4  # the failed call and the embedding are not chat examples
    # Calls a millisecond apart may tie on created_at; find each by its first user message.
    by_question = {
        next(m["content"] for m in e["messages"] if m["role"] == "user"): e for e in examples
    }
    first = by_question["What is relaylog?"]
    tool_call = by_question["tool: weather in Paris"]
    tool_round = by_question["weather in Oslo?"]
    streamed = by_question["stream me"]
    assert first["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is relaylog?"},
        {"role": "assistant", "content": "Echo: What is relaylog?"},
    ]
    reply = tool_call["messages"][-1]
    assert "content" not in reply
    assert reply["tool_calls"][0]["function"]["name"] == "get_weather"
    assert tool_call["tools"] == [WEATHER_TOOL] and tool_call["parallel_tool_calls"] is False
    assert [m["role"] for m in tool_round["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert tool_round["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert streamed["messages"][-1] == {"role": "assistant", "content": "Echo: stream me"}


async def test_export_filters_with_query_parameters(traffic: Client) -> None:
    response = await traffic.get(
        "/v1/export", params={"format": "openai-chat", "property": "prompt-version=v2"}
    )
    lines = (await response.read()).splitlines()
    assert len(lines) == 1
    tree = orjson.dumps({"request": {"path": {"equals": "/v1/embeddings"}}}).decode()
    response = await traffic.get("/v1/export", params={"filter": tree})
    rows = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert [r["path"] for r in rows] == ["/v1/embeddings"]


async def test_jsonl_exports_whole_rows_oldest_first(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    await fill(client.app[STORE])
    response = await client.get("/v1/export")
    rows = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert [r["id"] for r in rows] == IDS
    first = rows[0]
    assert set(first) == {*ROW_COLUMNS, "feedback", "scores", "session"}
    feedback = first["feedback"]
    assert (feedback["rating"], feedback["comment"]) == (True, "great answer")
    assert feedback["created_at"] <= feedback["updated_at"]
    assert first["session"]["id"] == "s1" and first["session"]["feedback"]["rating"] is True
    assert first == await client.app[STORE].get_request("r1")
    assert first["scores"] == {"accuracy": 95.0, "helpful": 1.0}
    assert first["properties"] == {"app": "chat", "prompt_version": "v1"}
    assert first["request_body"]["messages"][0]["content"] == "Hello WORLD"
    response = await client.get("/v1/export", params={"feedback": "up", "score": "accuracy>90"})
    assert [orjson.loads(x)["id"] for x in (await response.read()).splitlines()] == ["r1"]


async def test_csv(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    await fill(client.app[STORE])
    response = await client.get("/v1/export", params={"format": "csv", "user": ["alice", "bob"]})
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    table = list(csv.reader(io.StringIO((await response.read()).decode())))
    assert table[0] == list(CSV_COLUMNS)
    rows = [dict(zip(table[0], line, strict=True)) for line in table[1:]]
    assert [r["id"] for r in rows] == ["r1", "r2", "r3", "r6"]
    assert rows[0]["feedback_rating"] == "true" and rows[1]["feedback_rating"] == "false"
    assert rows[2]["feedback_rating"] == "" and rows[3]["is_stream"] == "true"
    assert orjson.loads(rows[0]["scores"]) == {"accuracy": 95.0, "helpful": 1.0}
    assert orjson.loads(rows[0]["request_body"])["messages"][0]["content"] == "Hello WORLD"
    assert [r["session_rating"] for r in rows] == ["true", "true", "", "false"]


async def test_jsonl_rows_carry_their_session_rating(make_proxy: ProxyFactory) -> None:
    client = await make_proxy()
    await fill(client.app[STORE])
    response = await client.get("/v1/export", params={"user": "bob"})
    rows = [orjson.loads(line) for line in (await response.read()).splitlines()]
    assert [(r["id"], r["session"]["feedback"]["rating"]) for r in rows] == [
        ("r2", True),
        ("r6", False),
    ]


async def test_export_reads_in_keyset_batches(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH_ROWS", 2)
    client = await make_proxy()
    await fill(client.app[STORE])
    response = await client.get("/v1/export")
    assert [orjson.loads(x)["id"] for x in (await response.read()).splitlines()] == IDS
    response = await client.get("/v1/export", params={"limit": "5"})
    assert [orjson.loads(x)["id"] for x in (await response.read()).splitlines()] == IDS[:5]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "parquet"}, "format must be one of"),
        ({"modle": "x"}, "unknown query parameter 'modle'"),
        ({"filter": "{"}, "filter is not valid JSON"),
        ({"filter": '{"request": {"x": {"equals": 1}}}'}, "filter.request.x"),
        ({"feedback": "maybe"}, "feedback"),
        ({"since": "last tuesday"}, "since"),
        ({"limit": "-1"}, "limit"),
        ({"property": "novalue"}, "KEY=VALUE"),
    ],
)
async def test_bad_export_requests_get_400(
    proxy: Client, params: dict[str, str], message: str
) -> None:
    response = await proxy.get("/v1/export", params=params)
    assert response.status == 400
    payload = await response.json()
    assert payload["data"] is None and message in payload["error"]


async def test_export_needs_the_proxy_key(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(auth={"proxy_keys": ["sk-admin"]})
    assert (await client.get("/v1/export")).status == 401
    ok = await client.get("/v1/export", headers={"Authorization": "Bearer sk-admin"})
    assert ok.status == 200 and await ok.read() == b""


async def test_a_dataset_download_is_named_after_the_dataset(logged: Client) -> None:
    named = [("best answers", "relaylog-best-answers.csv"), ('"../', "relaylog-export.csv")]
    for name, file_name in named:
        body = {"datasetName": name, "requestIds": IDS[:1]}
        assert (await logged.post("/v1/helicone-dataset", json=body)).status == 201
        response = await logged.get("/v1/export", params={"dataset": name, "format": "csv"})
        assert response.status == 200
        assert response.headers["Content-Disposition"] == f'attachment; filename="{file_name}"'


async def test_an_unknown_dataset_is_a_404_not_an_empty_export(logged: Client) -> None:
    response = await logged.get("/v1/export", params={"dataset": "typo"})
    assert response.status == 404
    assert await response.json() == {"data": None, "error": "no dataset with id or name 'typo'"}


def test_progress_bar_draws_on_a_terminal_stream() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=200)
    progress.update(50, final=False)
    progress.update(200, final=True)
    text = stream.getvalue()
    assert "\rexporting [######" in text and " 25.0% 50/200 rows" in text
    assert text.endswith(" 100.0% 200/200 rows  " + text.rsplit("rows  ", 1)[1])
    assert text.endswith("rows/s\n")


def test_export_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    out = tmp_path / "up.jsonl"
    assert main(["export", "--db", db, "--feedback", "up", "-o", str(out)]) == 0
    assert [orjson.loads(x)["id"] for x in out.read_bytes().splitlines()] == ["r1", "r5"]
    err = capsys.readouterr().err
    assert "exported 2 of 2 rows" in err and "\r" not in err
    assert main(["export", "--db", db, "--format", "openai-chat", "--model", "gpt-4o"]) == 0
    captured = capsys.readouterr()
    check_fine_tuning_example(captured.out.strip().encode())
    assert "exported 1 of 1 rows" in captured.err
    assert main(["export", "--db", db, "--format", "openai-chat", "--since", "2024-05-02"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "exported 0 of 4 rows, skipped 4 that are not chat examples" in captured.err
    assert main(["export", "--db", db, "--format", "csv", "--limit", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert main(["export", "--db", db, "--dataset", "missing"]) == 1
    assert "no dataset with id or name 'missing'" in capsys.readouterr().err


async def test_a_store_failure_mid_export_breaks_the_download(
    make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "BATCH_ROWS", 2)
    client = await make_proxy()
    store = client.app[STORE]
    await fill(store)
    real_fetch = store.fetch
    calls = 0

    async def failing_fetch(sql: str, params: Any = ()) -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise StoreError("disk I/O error")
        return await real_fetch(sql, params)

    monkeypatch.setattr(store, "fetch", failing_fetch)
    response = await client.get("/v1/export")
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


@pytest.mark.parametrize("span", ["999999w", "999999d", "999999h"])
async def test_a_span_before_1970_means_the_whole_log(proxy: Client, span: str) -> None:
    await fill(proxy.app[STORE])
    for bound, expected in [("since", IDS), ("until", [])]:
        response = await proxy.get("/v1/export", params={bound: span})
        assert response.status == 200, await response.text()
        lines = (await response.read()).splitlines()
        assert sorted(orjson.loads(x)["id"] for x in lines) == sorted(expected), bound


def test_the_cli_takes_a_span_before_1970(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    assert main(["export", "--db", db, "--since", "999999w"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert len(captured.out.splitlines()) == len(IDS)
