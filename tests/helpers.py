"""Test helpers, imported by the tests (never through conftest): the client alias, waiting for
the store, reading /metrics, and relaylog as an operator runs it (`python -m proxy serve` in a
subprocess, its output kept in files)."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Handler
from prometheus_client.parser import text_string_to_metric_families

from proxy.sandbox import create_sandbox_app
from proxy.state import RECORDER, STORE
from storage import Store

IN_CI = os.environ.get("CI") == "true"

Client = TestClient[web.Request, web.Application]
"""relaylog (or any aiohttp app) under a real test server."""
ProxyFactory = Callable[..., Awaitable[Client]]
"""The `make_proxy` fixture: settings overrides per section -> a started relaylog."""
AppUpstream = Callable[[web.Application], Awaitable[str]]
"""The `app_upstream` fixture: an aiohttp app -> the /v1 base URL it serves on."""


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


async def start_upstream(**server_kwargs: Any) -> Upstream:
    """Start a sandbox upstream that records each request; close it with `.server.close()`."""
    app = create_sandbox_app()
    upstream = Upstream(TestServer(app, **server_kwargs))

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()
        upstream.received.append(
            Received(
                request.method, request.path, request.query_string, dict(request.headers), body
            )
        )
        return await handler(request)

    app.middlewares.insert(0, record)
    await upstream.server.start_server()
    return upstream


def port_of(client: Client) -> int:
    """The port a started test server listens on."""
    port = client.server.port
    assert port is not None
    return port


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


def ids_of(payload: dict[str, Any]) -> list[str]:
    """The request ids in a /v1/request/query answer, in order."""
    assert payload["error"] is None, payload
    return [row["request_id"] for row in payload["data"]]


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """`/metrics` as {'name{label="v",...}': value}, labels sorted by name."""
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


LISTEN = re.compile(rb"listening on (http://\S+)")
_runs = itertools.count()


@dataclass
class Served:
    """`relaylog serve` running in a subprocess."""

    process: asyncio.subprocess.Process
    url: str
    stdout: Path
    stderr: Path

    def logs(self) -> bytes:
        """Everything the process printed so far, stdout and stderr."""
        return self.stdout.read_bytes() + self.stderr.read_bytes()

    async def stop(self) -> int:
        if self.process.returncode is None:
            self.process.terminate()
        return await asyncio.wait_for(self.process.wait(), 60)

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def clean_env() -> dict[str, str]:
    """The environment without RELAYLOG_* variables, as a fresh shell has it."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RELAYLOG_")}


async def start_serve(
    workdir: Path,
    db: Path,
    *args: str,
    env: dict[str, str] | None = None,
    verbose: bool = False,
) -> Served:
    """Start `relaylog serve` on a free port; returns once it printed its listen line."""
    run = next(_runs)
    stdout, stderr = workdir / f"serve-{run}.out", workdir / f"serve-{run}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "proxy",
            *(["-v"] if verbose else []),
            "serve",
            "--port",
            "0",
            "--db",
            str(db),
            *args,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env={**clean_env(), **(env or {})},
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        match = LISTEN.search(stdout.read_bytes())
        if match:
            return Served(process, match.group(1).decode(), stdout, stderr)
        if process.returncode is not None or loop.time() > deadline:
            if process.returncode is None:
                process.kill()
            await process.wait()
            raise AssertionError(f"serve did not start: {stderr.read_text()}")
        await asyncio.sleep(0.05)


def heap_bytes(pid: int) -> int:
    """Resident anonymous memory of a process (Linux /proc `RssAnon`): its heap, without the
    shared libraries and mapped files that VmRSS also counts."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no RssAnon for pid {pid}")
