"""Shared fixtures: a real sandbox upstream, relaylog in front of it, helpers to read the store."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import create_app
from proxy.config import Settings, load_settings
from proxy.sandbox import create_sandbox_app
from proxy.state import RECORDER, STORE
from storage import Store
from tests.logbook import fill

IN_CI = os.environ.get("CI") == "true"


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    """A running sandbox upstream that remembers every request it received."""

    server: TestServer
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v1"))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    app = create_sandbox_app()
    seen: list[Received] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        seen.append(
            Received(
                request.method, request.path, request.query_string, dict(request.headers), body
            )
        )
        return await handler(request)

    app.middlewares.insert(0, record)
    server = TestServer(app)
    await server.start_server()
    yield Upstream(server, seen)
    await server.close()


POSTGRES_URL = os.environ.get("RELAYLOG_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


async def _postgres_missing() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[test]')"
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
    await conn.close()
    return None


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A PostgreSQL URL with a fresh schema of its own, dropped afterwards."""
    missing = await _postgres_missing()
    if missing:
        if IN_CI:
            pytest.fail(missing)
        pytest.skip(missing)
    import asyncpg

    schema = f"relaylog_test_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    conn = await asyncpg.connect(POSTGRES_URL)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store backend in turn: a SQLite path, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "relaylog.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


AppUpstream = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def app_upstream() -> AsyncIterator[AppUpstream]:
    """Start an arbitrary aiohttp app as the upstream; returns its /v1 base URL."""
    servers: list[TestServer] = []

    async def start(app: web.Application) -> str:
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        return str(server.make_url("/v1"))

    yield start
    for server in servers:
        await server.close()


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in an empty directory with no RELAYLOG_* variables, as a fresh shell would."""
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("RELAYLOG_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def make_settings(tmp_path: Path, upstream: Upstream) -> Callable[..., Settings]:
    """Settings for a test: a fresh SQLite file and the sandbox upstream, plus overrides.

    Overrides are given per section, e.g. make_settings(auth={"proxy_keys": ["k"]}).
    """

    def build(**sections: dict[str, Any]) -> Settings:
        data: dict[str, Any] = {
            "store": {"db": str(tmp_path / "relaylog.db")},
            "upstream": {"url": upstream.url},
        }
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return Settings.model_validate(data)

    return build


ProxyFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def make_proxy(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> ProxyFactory:
    """Start relaylog (create_app) under a real test server; returns its TestClient."""

    async def start(**sections: dict[str, Any]) -> TestClient[web.Request, web.Application]:
        app = create_app(make_settings(**sections))
        client: TestClient[web.Request, web.Application] = await aiohttp_client(
            app, server_kwargs={"handler_cancellation": True}
        )
        return client

    return start


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> TestClient[web.Request, web.Application]:
    return await make_proxy()


@pytest.fixture
async def logged(
    make_proxy: ProxyFactory, store_url: str
) -> TestClient[web.Request, web.Application]:
    """relaylog over the hand-built log of tests/logbook.py, in SQLite and in PostgreSQL."""
    client = await make_proxy(store={"db": store_url})
    await fill(client.app[STORE])
    return client


async def settle(app: web.Application, timeout: float = 5.0) -> None:
    """Wait until every exchange served so far has been committed to the store."""
    recorder = app[RECORDER]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not recorder.idle:
        if loop.time() > deadline:
            raise AssertionError(f"recorder did not settle: depth={recorder.depth}")
        await asyncio.sleep(0.01)


async def stored(app: web.Application, request_id: str) -> dict[str, Any]:
    """The stored row for `request_id` once written (fails the test if it never is)."""
    await settle(app)
    row = await app[STORE].get_request(request_id)
    assert row is not None, f"no row for {request_id}"
    return row


def store_of(app: web.Application) -> Store:
    return app[STORE]


__all__ = [
    "IN_CI",
    "AppUpstream",
    "ProxyFactory",
    "Upstream",
    "load_settings",
    "settle",
    "store_of",
    "stored",
]
