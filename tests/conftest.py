"""Shared fixtures: a real sandbox upstream, relaylog in front of it, the stores to run it on.

Helpers and types live in tests/helpers.py; tests import them from there, never from here."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.app import create_app
from proxy.config import Settings
from proxy.state import STORE
from tests.helpers import IN_CI, AppUpstream, Client, ProxyFactory, Upstream, start_upstream
from tests.logbook import fill

# The browser tests' fixtures (relaylog on the sandbox, Chromium, pages).
pytest_plugins = ("tests.browser",)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    started = await start_upstream()
    yield started
    await started.server.close()


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


@pytest.fixture
async def make_proxy(aiohttp_client: Any, make_settings: Callable[..., Settings]) -> ProxyFactory:
    """Start relaylog (create_app) under a real test server; returns its TestClient."""

    async def start(**sections: dict[str, Any]) -> Client:
        app = create_app(make_settings(**sections))
        client: Client = await aiohttp_client(app, server_kwargs={"handler_cancellation": True})
        return client

    return start


@pytest.fixture
async def proxy(make_proxy: ProxyFactory) -> Client:
    return await make_proxy()


@pytest.fixture
async def logged(make_proxy: ProxyFactory, store_url: str) -> Client:
    """relaylog over the hand-built log of tests/logbook.py, in SQLite and in PostgreSQL."""
    client = await make_proxy(store={"db": store_url})
    await fill(client.app[STORE])
    return client
