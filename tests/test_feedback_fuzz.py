"""Arbitrary bodies, ids and keys at every feedback endpoint: never a 500, nothing changed."""

from __future__ import annotations

import io
import json
import time
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import Row
from storage.models import utc_iso
from tests.helpers import Client, ProxyFactory, store_of

KNOWN_ID = "known-1"
KNOWN_SESSION = "known-session"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ENDPOINTS = [
    ("POST", "/v1/request/{id}/feedback"),
    ("POST", "/v1/request/{id}/score"),
    ("POST", "/v1/session/{id}/feedback"),
    ("GET", "/v1/request/{id}"),
    ("POST", "/v1/feedback"),
    ("POST", "/v1/feedback/batch"),
]


def to_json(value: Any) -> bytes:
    """json, not orjson: it also writes integers beyond 64 bits."""
    return json.dumps(value).encode()


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.text(min_size=1, max_size=140),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,20}", fullmatch=True),
    st.just(KNOWN_ID),
).filter(lambda s: s not in (".", ".."))
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "rating": scalars,
        "comment": scalars,
        "scores": st.dictionaries(st.text(max_size=140), scalars, max_size=3) | scalars,
        "helicone-id": ids | scalars,
        "items": st.lists(
            st.fixed_dictionaries(
                {}, optional={"request_id": ids | scalars, "rating": scalars, "extra": scalars}
            ),
            max_size=3,
        )
        | scalars,
        "extra": scalars,
    },
)
bodies = st.one_of(
    st.binary(max_size=120),
    json_values.map(to_json),
    near_valid.map(to_json),
    st.sampled_from([b'{"rating": NaN}', b'{"scores": {"a": 1e999}}', b'{"rating": tru']),
)


async def snapshot(client: Client) -> list[list[dict[str, Any]]]:
    store = store_of(client.app)
    return [
        await store.fetch("SELECT id FROM requests ORDER BY id"),
        await store.fetch("SELECT * FROM feedback ORDER BY request_id"),
        await store.fetch("SELECT * FROM session_feedback ORDER BY session_id"),
        await store.fetch("SELECT * FROM scores ORDER BY request_id, name"),
    ]


async def send(
    client: Client, endpoint: tuple[str, str], request_id: str, body: bytes, **headers: str
) -> int:
    method, template = endpoint
    path = template.replace("{id}", quote(request_id, safe=""))
    data = io.BytesIO(body) if method == "POST" else None
    headers = {"Content-Type": "application/json", **headers}
    async with client.request(method, path, data=data, headers=headers) as response:
        answer = orjson.loads(await response.read())
        assert set(answer) == {"data", "error"}
        return response.status


@pytest.fixture
async def empty_log(make_proxy: ProxyFactory) -> Client:
    return await make_proxy(feedback={"wait_ms": 0})


@pytest.fixture
async def one_logged(make_proxy: ProxyFactory) -> Client:
    client = await make_proxy(feedback={"wait_ms": 0})
    row = Row(
        id=KNOWN_ID,
        created_at=utc_iso(time.time()),
        method="POST",
        path="/v1/chat/completions",
        session_id=KNOWN_SESSION,
    )
    await store_of(client.app).write_batch([row])
    return client


@pytest.fixture
async def keyed(make_proxy: ProxyFactory) -> Client:
    return await make_proxy(auth={"proxy_keys": ["k-secret"]}, feedback={"wait_ms": 0})


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), request_id=ids, body=bodies)
async def test_arbitrary_input_on_an_empty_log_never_500s_nor_writes(
    empty_log: Client, endpoint: tuple[str, str], request_id: str, body: bytes
) -> None:
    status = await send(empty_log, endpoint, request_id, body)
    assert status < 500
    assert await snapshot(empty_log) == [[], [], [], []]


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies)
async def test_arbitrary_bodies_for_a_logged_request_change_nothing_unless_accepted(
    one_logged: Client, endpoint: tuple[str, str], body: bytes
) -> None:
    request_id = KNOWN_SESSION if endpoint[1].startswith("/v1/session") else KNOWN_ID
    before = await snapshot(one_logged)
    status = await send(one_logged, endpoint, request_id, body)
    assert status < 500
    if status >= 400:
        assert await snapshot(one_logged) == before


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), authorization=PRINTABLE, body=bodies)
async def test_arbitrary_authorization_headers_are_401(
    keyed: Client, endpoint: tuple[str, str], authorization: str, body: bytes
) -> None:
    status = await send(keyed, endpoint, KNOWN_ID, body, Authorization=authorization)
    assert status == 401 or authorization.strip() == "Bearer k-secret"
    assert await snapshot(keyed) == [[], [], [], []]
