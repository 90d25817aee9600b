"""POST /v1/request/query and the filter tree, against a hand-built log in each store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.api.requests import CURSOR_HEADER
from proxy.cli import main
from storage import Row, open_store
from storage.query.filters import (
    KEYED,
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_NODES,
    TABLES,
    compile_filter,
)
from storage.query.filters import OPERATORS as OPERATORS_OF
from tests.helpers import Client, ProxyFactory, ids_of
from tests.logbook import IDS, filled_sqlite


async def query(client: Client, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/request/query", json=body)
    return response.status, await response.json()


def leaf(table: str, column: str, op: str, value: Any) -> dict[str, Any]:
    return {table: {column: {op: value}}}


def both(operator: str, left: Any, right: Any) -> dict[str, Any]:
    return {"left": left, "operator": operator, "right": right}


CASES: list[tuple[str, Any, set[str]]] = [
    ("all", "all", set(IDS)),
    ("empty object is all", {}, set(IDS)),
    ("equals", leaf("request", "model", "equals", "gpt-4o-mini"), {"r1", "r3"}),
    (
        "not-equals counts NULL",
        leaf("request", "model", "not-equals", "gpt-4o-mini"),
        {"r2", "r4", "r5", "r6"},
    ),
    ("like", leaf("request", "model", "like", "gpt-4o%"), {"r1", "r2", "r3"}),
    ("ilike", leaf("request", "model", "ilike", "GPT-4O%"), {"r1", "r2", "r3"}),
    ("contains ignores case", leaf("request", "model", "contains", "4O"), {"r1", "r2", "r3"}),
    ("not-contains", leaf("request", "model", "not-contains", "4o"), {"r4", "r5", "r6"}),
    ("null", leaf("request", "user_id", "equals", "null"), {"r4"}),
    ("not null", leaf("request", "user_id", "not-equals", "null"), set(IDS) - {"r4"}),
    ("gte", leaf("request", "status", "gte", 400), {"r3", "r4"}),
    ("gt (Helicone name)", leaf("request_response_rmt", "latency", "gt", 100), {"r2", "r6"}),
    ("lt", leaf("request_response_rmt", "latency", "lt", 100), {"r3", "r5"}),
    ("lte", leaf("request", "latency_ms", "lte", 100), {"r1", "r3", "r5"}),
    ("number equals", leaf("request", "latency_ms", "equals", 250), {"r2"}),
    ("number not-equals", leaf("request", "latency_ms", "not-equals", 250), set(IDS) - {"r2"}),
    ("numeric string", leaf("request", "total_tokens", "gt", "10"), {"r1", "r2", "r6"}),
    ("cost null", leaf("request_response_rmt", "cost", "equals", "null"), {"r3", "r4", "r6"}),
    ("date", leaf("request", "created_at", "gte", "2024-05-02"), {"r3", "r4", "r5", "r6"}),
    ("time", leaf("request", "created_at", "lt", "2024-05-02T00:00:00Z"), {"r1", "r2"}),
    ("offset time", leaf("request", "created_at", "equals", "2024-05-01T14:00:00+02:00"), {"r2"}),
    (
        "Helicone time",
        leaf("request_response_rmt", "request_created_at", "gt", "2024-05-03T08:00:00+00:00"),
        {"r6"},
    ),
    ("bool", leaf("request", "is_stream", "equals", True), {"r6"}),
    ("body contains", leaf("request", "prompt", "contains", "hello world"), {"r1"}),
    (
        "session",
        leaf("sessions_request_response_rmt", "session_session_id", "equals", "s2"),
        {"r5", "r6"},
    ),
    ("property", leaf("properties", "app", "equals", "chat"), {"r1", "r3", "r6"}),
    ("property key case", leaf("properties", "App", "equals", "chat"), {"r1", "r3", "r6"}),
    ("property not-equals", leaf("properties", "app", "not-equals", "chat"), {"r2", "r4", "r5"}),
    ("property contains", leaf("properties", "app", "contains", "search"), {"r2", "r5"}),
    ("property ilike", leaf("properties", "app", "ilike", "search%"), {"r2", "r5"}),
    (
        "property missing",
        leaf("properties", "prompt_version", "equals", "null"),
        {"r3", "r4", "r6"},
    ),
    ("contains is literal", leaf("properties", "note", "contains", "0% off_"), {"r6"}),
    ("wildcards escaped", leaf("properties", "note", "contains", "%%"), set()),
    (
        "rmt properties",
        {"request_response_rmt": {"properties": {"app": {"equals": "chat"}}}},
        {"r1", "r3", "r6"},
    ),
    ("legacy feedback", leaf("feedback", "rating", "equals", True), {"r1", "r5"}),
    (
        "current feedback",
        leaf("request_response_rmt", "helicone-score-feedback", "equals", True),
        {"r1", "r5"},
    ),
    ("negative feedback", leaf("feedback", "rating", "equals", False), {"r2"}),
    ("not rated up", leaf("feedback", "rating", "not-equals", True), {"r2", "r3", "r4", "r6"}),
    ("no feedback", leaf("feedback", "rating", "equals", "null"), {"r3", "r4", "r6"}),
    ("any feedback", leaf("feedback", "rating", "not-equals", "null"), {"r1", "r2", "r5"}),
    ("feedback comment", leaf("feedback", "comment", "contains", "great"), {"r1"}),
    ("session feedback", leaf("session_feedback", "rating", "equals", True), {"r1", "r2"}),
    ("score gt", leaf("scores", "accuracy", "gt", 90), {"r1"}),
    ("score gte", leaf("scores", "accuracy", "gte", 80), {"r1", "r2"}),
    ("score missing", leaf("scores", "accuracy", "equals", "null"), {"r3", "r4", "r6"}),
    ("boolean score", leaf("scores", "helpful", "equals", True), {"r1"}),
    ("rmt score string", {"request_response_rmt": {"scores": {"accuracy": {"lt": "70"}}}}, {"r5"}),
    (
        "feedback and score",
        both(
            "and", leaf("feedback", "rating", "equals", True), leaf("scores", "accuracy", "gt", 90)
        ),
        {"r1"},
    ),
    (
        "or",
        both(
            "or",
            leaf("request", "model", "equals", "gpt-4o"),
            leaf("request", "user_id", "equals", "carol"),
        ),
        {"r2", "r5"},
    ),
    (
        "nested",
        both(
            "OR",
            both(
                "and",
                leaf("properties", "app", "equals", "chat"),
                leaf("request", "status", "equals", 200),
            ),
            leaf("feedback", "rating", "equals", False),
        ),
        {"r1", "r2", "r6"},
    ),
    (
        "several columns",
        {"request": {"model": {"equals": "gpt-4o-mini"}, "status": {"equals": 500}}},
        {"r3"},
    ),
    ("several operators", {"request": {"latency_ms": {"gte": 50, "lte": 250}}}, {"r1", "r2", "r3"}),
]


@pytest.mark.parametrize(("tree", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_filter_tree(logged: Client, tree: Any, expected: set[str]) -> None:
    status, payload = await query(logged, {"filter": tree, "limit": 1000})
    assert status == 200, payload
    assert set(ids_of(payload)) == expected


async def test_newest_first_with_helicone_fields_feedback_and_scores(logged: Client) -> None:
    status, payload = await query(
        logged, {"filter": "all", "isCached": False, "includeInputs": True, "offset": 0}
    )
    assert status == 200
    assert ids_of(payload) == list(reversed(IDS))
    first = payload["data"][-1]
    assert first["request_id"] == "r1"
    assert first["request_created_at"] == "2024-05-01T10:00:00.000Z"
    assert first["feedback_rating"] is True
    assert first["feedback_comment"] == "great answer"
    assert first["scores"] == {"accuracy": 95.0, "helpful": 1.0}
    assert (
        first["properties"]
        == first["request_properties"]
        == {
            "app": "chat",
            "prompt_version": "v1",
        }
    )
    assert first["request_body"]["messages"][0]["content"] == "Hello WORLD"
    assert first["delay_ms"] == 100.0 and first["cost"] == 0.001


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ({"created_at": "asc"}, IDS),
        ({"latency": "desc"}, ["r6", "r2", "r1", "r3", "r5", "r4"]),
        ({"latency_ms": "asc"}, ["r4", "r5", "r3", "r1", "r2", "r6"]),
        ({"cost": "desc"}, ["r2", "r1", "r5", "r6", "r4", "r3"]),
    ],
)
async def test_sort_and_cursor_pages(
    logged: Client, sort: dict[str, str], expected: list[str]
) -> None:
    status, payload = await query(logged, {"sort": sort})
    assert status == 200
    assert ids_of(payload) == expected
    seen: list[str] = []
    body: dict[str, Any] = {"sort": sort, "limit": 4}
    while True:
        response = await logged.post("/v1/request/query", json=body)
        seen += ids_of(await response.json())
        cursor = response.headers.get(CURSOR_HEADER)
        if cursor is None:
            break
        body["cursor"] = cursor
    assert seen == expected


async def test_offset_and_limit(logged: Client) -> None:
    status, payload = await query(logged, {"sort": {"created_at": "asc"}, "offset": 2, "limit": 3})
    assert status == 200
    assert ids_of(payload) == ["r3", "r4", "r5"]


def nested(depth: int) -> Any:
    tree: Any = "all"
    for _ in range(depth):
        tree = both("and", tree, "all")
    return tree


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": leaf("request", "modle", "equals", "x")}, "filter.request.modle"),
        ({"filter": leaf("requests", "model", "equals", "x")}, "filter.requests: unknown table"),
        ({"filter": leaf("request", "model", "gt", "x")}, "filter.request.model.gt"),
        ({"filter": leaf("request", "status", "equals", "abc")}, "filter.request.status.equals"),
        ({"filter": leaf("request", "created_at", "gte", "yesterday")}, "created_at.gte"),
        ({"filter": leaf("feedback", "rating", "equals", "yes")}, "feedback.rating.equals"),
        ({"filter": leaf("request", "model", "equals", "a\x00b")}, "NUL"),
        ({"filter": {"request": {}}}, "filter.request: expected an object of columns"),
        ({"filter": {"request": {"model": {}}}}, "expected an object of operators"),
        ({"filter": both("xor", "all", "all")}, "filter.operator"),
        ({"filter": {"left": "all", "operator": "and"}}, "exactly left, operator and right"),
        ({"filter": both("and", "all", both("or", 5, "all"))}, "filter.right.left"),
        ({"filter": [1]}, "filter: expected"),
        ({"filter": nested(MAX_DEPTH + 1)}, f"nested deeper than {MAX_DEPTH}"),
        (
            {"filter": {"scores": {f"s{i}": {"gt": 1} for i in range(MAX_CONDITIONS + 1)}}},
            f"more than {MAX_CONDITIONS} conditions",
        ),
        ({"limit": 1001}, "limit"),
        ({"limit": 0}, "limit"),
        ({"sort": {"total_tokens": "desc"}}, "cannot sort by 'total_tokens'"),
        ({"sort": {"created_at": "desc", "cost": "asc"}}, "exactly one"),
        ({"cursor": "not-a-cursor"}, "invalid cursor"),
        ({"filtre": "all"}, "filtre"),
    ],
)
async def test_bad_requests_get_400_naming_the_problem(
    logged: Client, body: dict[str, Any], message: str
) -> None:
    status, payload = await query(logged, body)
    assert status == 400, payload
    assert payload["data"] is None
    assert message in payload["error"]


async def test_cursor_from_another_sort_is_refused(logged: Client) -> None:
    response = await logged.post("/v1/request/query", json={"limit": 1})
    cursor = response.headers[CURSOR_HEADER]
    status, payload = await query(logged, {"sort": {"cost": "desc"}, "cursor": cursor})
    assert status == 400
    assert "another sort" in payload["error"]


async def test_deep_nesting_within_the_bound_is_fine(logged: Client) -> None:
    status, payload = await query(logged, {"filter": nested(MAX_DEPTH)})
    assert status == 200
    assert set(ids_of(payload)) == set(IDS)


INJECTIONS = [
    "x' OR '1'='1",
    'x" OR 1=1 --',
    "'; DROP TABLE requests; --",
    "') OR 1=1 --",
    "app) OR (1=1",
    "%' OR r.id LIKE '%",
]


@pytest.mark.parametrize("attack", INJECTIONS)
async def test_injection_in_values_and_keys_is_just_data(logged: Client, attack: str) -> None:
    trees = [
        leaf("request", "model", "equals", attack),
        leaf("request", "model", "like", attack),
        leaf("properties", attack, "equals", "chat"),
        leaf("properties", "app", "contains", attack),
        leaf("scores", attack, "gt", 0),
        leaf("dataset", "name", "equals", attack),
    ]
    for tree in trees:
        status, payload = await query(logged, {"filter": tree})
        assert status == 200, (tree, payload)
        assert ids_of(payload) == [], tree
    for tree in (
        leaf("request", attack, "equals", "x"),
        leaf(attack, "model", "equals", "x"),
        leaf("request", "model", attack, "x"),
        {"sort": {attack: "desc"}},
    ):
        body = tree if "sort" in tree else {"filter": tree}
        status, payload = await query(logged, body)
        assert status == 400, (tree, payload)
    status, payload = await query(logged, {"limit": 1000})
    assert ids_of(payload) == list(reversed(IDS))


def test_compiled_sql_holds_no_value_or_key() -> None:
    tree = both(
        "and",
        leaf("properties", "k'ey", "equals", "v'al"),
        leaf("scores", 'sc"ore', "gt", 3),
    )
    condition = compile_filter(tree)
    assert "k'ey" not in condition.sql and "v'al" not in condition.sql
    assert 'sc"ore' not in condition.sql
    assert condition.params == ["k'ey", "v'al", 'sc"ore', 3.0]


async def test_query_needs_the_proxy_key_when_keys_are_set(make_proxy: ProxyFactory) -> None:
    client = await make_proxy(auth={"proxy_keys": ["sk-admin"], "feedback_keys": ["fb-key"]})
    assert (await client.post("/v1/request/query", json={})).status == 401
    feedback_only = {"Authorization": "Bearer fb-key"}
    assert (await client.post("/v1/request/query", json={}, headers=feedback_only)).status == 401
    admin = {"Authorization": "Bearer sk-admin"}
    response = await client.post("/v1/request/query", json={}, headers=admin)
    assert response.status == 200
    assert (await response.json()) == {"data": [], "error": None}


async def test_other_methods_are_refused_not_forwarded(proxy: Client) -> None:
    response = await proxy.get("/v1/request/query")
    assert response.status == 405
    assert response.headers["Allow"] == "POST"


SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=SURROGATES), max_size=12)
    | st.sampled_from(["null", "2024-05-01", "2024-05-01T10:00:00Z", "%", "_", "\\"])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
NAMES = st.sampled_from(
    [
        "request",
        "response",
        "request_response_rmt",
        "feedback",
        "session_feedback",
        "scores",
        "properties",
        "dataset",
        "sessions_request_response_rmt",
        "values",
    ]
) | st.text(max_size=8)
COLUMNS = st.sampled_from(
    [
        "model",
        "user_id",
        "status",
        "latency",
        "created_at",
        "cost",
        "rating",
        "comment",
        "helicone-score-feedback",
        "properties",
        "scores",
        "name",
        "is_stream",
        "prompt",
        "app",
    ]
) | st.text(max_size=8)
OPERATORS = st.sampled_from(
    ["equals", "not-equals", "like", "ilike", "contains", "not-contains", "gt", "gte", "lt", "lte"]
) | st.text(max_size=6)
LEAVES = st.dictionaries(
    NAMES,
    st.dictionaries(
        COLUMNS, st.dictionaries(OPERATORS, JSON_VALUES, max_size=2) | JSON_VALUES, max_size=2
    )
    | JSON_VALUES,
    max_size=2,
)
PLAIN_TEXT = st.text(st.characters(exclude_categories=SURROGATES, exclude_characters="\x00"))
VALUES_OF_KIND = {
    "text": PLAIN_TEXT | st.integers() | st.just("null"),
    "number": st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.sampled_from(["0.5", "-3", "null", "1e308"]),
    "time": st.datetimes().map(lambda moment: moment.isoformat())
    | st.dates().map(str)
    | st.just("null"),
    "bool": st.booleans() | st.just("null"),
}
KNOWN_COLUMNS = sorted(
    {
        (table, name, column.kind)
        for table, columns in TABLES.items()
        for name, column in columns.items()
    }
    | {
        (table, key, column.kind)
        for table, (column, _) in KEYED.items()
        for key in ("app", "accuracy", "helpful", "App")
    }
)


@st.composite
def valid_leaves(draw: st.DrawFn) -> dict[str, Any]:
    table, column, kind = draw(st.sampled_from(KNOWN_COLUMNS))
    ops = draw(
        st.dictionaries(
            st.sampled_from(sorted(OPERATORS_OF[kind])),
            VALUES_OF_KIND[kind],
            min_size=1,
            max_size=2,
        )
    )
    return {table: {column: ops}}


VALID_TREES = st.recursive(
    st.just("all") | valid_leaves(),
    lambda inner: st.fixed_dictionaries(
        {"left": inner, "operator": st.sampled_from(["and", "or"]), "right": inner}
    ),
    max_leaves=8,
)
TREES = st.recursive(
    st.just("all") | LEAVES | JSON_SCALARS,
    lambda inner: (
        st.fixed_dictionaries(
            {
                "left": inner,
                "operator": st.sampled_from(["and", "or", "OR", "xor", ""]),
                "right": inner,
            }
        )
        | st.dictionaries(st.sampled_from(["left", "operator", "right"]), inner)
    ),
    max_leaves=12,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=VALID_TREES | TREES, path=st.sampled_from(["/v1/request/query", "/v1/request/stats"]))
async def test_random_trees_never_give_500(logged: Client, tree: Any, path: str) -> None:
    # The stdlib encoder, unlike orjson, writes integers beyond 64 bits.
    body = json.dumps({"filter": tree}, allow_nan=False)
    response = await logged.post(path, data=body, headers={"Content-Type": "application/json"})
    payload = await response.json()
    event(f"status {response.status}")
    assert response.status in (200, 400), payload
    assert (payload["error"] is None) == (response.status == 200)


def test_requests_command_takes_the_filter_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = filled_sqlite(tmp_path / "cli.db")
    assert main(["requests", "--db", db, "--json", "--feedback", "up"]) == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["r5", "r1"]
    assert (
        main(
            [
                "requests",
                "--db",
                db,
                "--json",
                "--property",
                "app=chat",
                "--model",
                "gpt-4o-mini",
                "--model",
                "my-local-llama",
                "--score",
                "helpful<1",
            ]
        )
        == 0
    )
    assert [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["r6"]
    assert (
        main(["requests", "--db", db, "--since", "2024-05-03", "--until", "2024-05-03T12:00"]) == 0
    )
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "id" and [line.split()[0] for line in table[1:]] == ["r5"]
    assert main(["requests", "--db", db, "--score", "accuracy>>9"]) == 2
    assert "invalid filter at score" in capsys.readouterr().err


def full_tree(depth: int) -> Any:
    """A complete binary tree of "all" leaves: 2**depth leaves and no condition at all."""
    tree: Any = "all"
    for _ in range(depth):
        tree = both("or", tree, tree)
    return tree


@pytest.mark.parametrize("path", ["/v1/request/query", "/v1/request/stats"])
async def test_every_node_counts_and_a_query_body_is_bounded(logged: Client, path: str) -> None:
    wide = await logged.post(path, json={"filter": full_tree(12)})
    assert wide.status == 400
    assert f"more than {MAX_NODES} nodes" in (await wide.json())["error"]
    # The largest tree allowed is still answered.
    assert (await logged.post(path, json={"filter": full_tree(8)})).status == 200
    padded = leaf("request", "model", "equals", "m" * (300 * 1024))
    big = await logged.post(path, json={"filter": padded})
    assert big.status == 413


# `model` is the model the caller asked for; OpenAI answers with a dated snapshot.


def snapshot_upstream() -> web.Application:
    """An upstream that answers every chat call as OpenAI does: with the model's dated name."""

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        snapshot = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4o": "gpt-4o-2024-08-06"}
        message = {"role": "assistant", "content": "ok"}
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": snapshot[body["model"]],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


async def test_model_filters_mean_the_requested_model(
    make_proxy: ProxyFactory, app_upstream: Any
) -> None:
    client = await make_proxy(upstream={"url": await app_upstream(snapshot_upstream())})
    for n, model in enumerate(["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]):
        response = await client.post(
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Helicone-Request-Id": f"m{n}"},
        )
        assert response.status == 200

    status, payload = await query(client, {"filter": leaf("request", "model", "equals", "gpt-4o")})
    assert status == 200 and ids_of(payload) == ["m1"]
    assert payload["data"][0]["response_model"] == "gpt-4o-2024-08-06"
    dated = leaf("request", "response_model", "equals", "gpt-4o-mini-2024-07-18")
    assert ids_of((await query(client, {"filter": dated}))[1]) == ["m2", "m0"]

    export = await client.get("/v1/export", params={"model": "gpt-4o-mini"})
    assert [orjson.loads(line)["id"] for line in (await export.read()).splitlines()] == ["m0", "m2"]
    export = await client.get("/v1/export", params={"response_model": "gpt-4o-2024-08-06"})
    assert [orjson.loads(line)["id"] for line in (await export.read()).splitlines()] == ["m1"]

    stats = await client.post("/v1/request/stats", json={"group_by": "model"})
    groups = (await stats.json())["data"]["groups"]
    assert [(g["key"]["model"], g["requests"]) for g in groups] == [
        ("gpt-4o", 1),
        ("gpt-4o-mini", 2),
    ]
    stats = await client.post("/v1/request/stats", json={"group_by": "response_model"})
    groups = (await stats.json())["data"]["groups"]
    assert [g["key"]["response_model"] for g in groups] == [
        "gpt-4o-2024-08-06",
        "gpt-4o-mini-2024-07-18",
    ]


def test_requests_command_model_and_response_model_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = filled_sqlite(tmp_path / "cli.db")

    async def add_dated() -> None:
        store = open_store(db)
        await store.open()
        dated = Row(
            id="dated",
            created_at="2024-05-04T00:00:00.000Z",
            method="POST",
            path="/v1/chat/completions",
            request_model="gpt-4o-mini",
            model="gpt-4o-mini",
            response_model="gpt-4o-mini-2024-07-18",
        )
        await store.write_batch([dated])
        await store.close()

    asyncio.run(add_dated())
    assert main(["requests", "--db", db, "--json", "--model", "gpt-4o-mini"]) == 0
    ids = [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]
    assert ids == ["dated", "r3", "r1"]
    flags = ["--response-model", "gpt-4o-mini-2024-07-18"]
    assert main(["requests", "--db", db, "--json", *flags]) == 0
    assert [orjson.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["dated"]


async def test_count_query_counts_the_matching_requests(logged: Client) -> None:
    response = await logged.post(
        "/v1/request/count/query", json={"filter": leaf("request", "user_id", "equals", "alice")}
    )
    assert response.status == 200
    assert await response.json() == {"data": 2, "error": None}
    response = await logged.post(
        "/v1/request/count/query", json={"filter": "all", "isCached": False}
    )
    assert (await response.json())["data"] == len(IDS)
    response = await logged.post("/v1/request/count/query", json={"filter": {"nope": {}}})
    assert response.status == 400


async def test_query_rows_carry_the_session_rating(logged: Client) -> None:
    status, payload = await query(logged, {"filter": "all", "sort": {"created_at": "asc"}})
    assert status == 200
    ratings = {row["request_id"]: row["session_feedback_rating"] for row in payload["data"]}
    assert ratings == {"r1": True, "r2": True, "r3": None, "r4": None, "r5": False, "r6": False}
