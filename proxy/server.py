"""Serving: the listener, signals, and the event-loop choice (`--workers` supervision is in
proxy/supervisor.py)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import gc
import importlib.util
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest

from proxy import __version__
from proxy.app import create_app
from proxy.config import Settings
from proxy.errors import ServeError
from proxy.gateway.headers import redact_query
from proxy.listener import BoundedSite, client_connection_limit, raise_open_file_limit
from proxy.sandbox import create_sandbox_app
from proxy.state import RECORDER
from storage import open_store
from storage.errors import StoreError
from storage.models import redact

log = logging.getLogger("relaylog")
T = TypeVar("T")
# Room for bursts of new connections (aiohttp's default of 128 makes the rest wait a SYN retry).
LISTEN_BACKLOG = 2048
# Allocations between young collections once serving (Python's default is 700).
YOUNG_GC_THRESHOLD = 20_000


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs each malformed request with a traceback and the start of the offending line
    (which may be an Authorization header); one line naming the error is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and exc.code < 500:
            record.msg = f"{record.msg}: malformed request ({type(exc).__name__}, {exc.code})"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


MALFORMED_REQUEST_FILTER = MalformedRequestFilter()


class AccessLog(AbstractAccessLogger):
    """`server.access_log`: one line per request in Apache's combined shape, with the values of
    credential query parameters redacted (`?api-key=`, `?key=`, `access_token`...) and no
    Referer (a page's URL may carry a token)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        query = redact_query(request.rel_url.raw_query_string)
        target = request.rel_url.raw_path + (f"?{query}" if query else "")
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.3fs "%s"',
            request.remote or "-",
            request.method,
            target,
            version.major,
            version.minor,
            response.status,
            response.body_length,
            time,
            request.headers.get("User-Agent", "-"),
        )


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed (the `speed` extra), else on asyncio's loop."""
    if importlib.util.find_spec("uvloop") is None:
        return asyncio.run(coro)
    import uvloop

    return uvloop.run(coro)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(settings: Settings) -> None:
    """Refuse a non-loopback listen address unless proxy keys or the explicit opt-out are set."""
    server = settings.server
    if (
        not is_loopback(server.host)
        and not settings.auth.proxy_keys
        and not server.allow_unauthenticated
    ):
        raise ServeError(
            f"refusing to listen on {server.host} without proxy keys: set RELAYLOG_AUTH_PROXY_KEYS "
            "or pass --allow-unauthenticated"
        )


async def start_site(
    app: web.Application,
    host: str,
    port: int,
    reuse_port: bool = False,
    max_connections: int | None = None,
    **kwargs: Any,
) -> web.AppRunner:
    """Set `app` up and listen (at most `max_connections` client connections at a time, when
    given); on any failure (port taken, store error, a signal) whatever was set up is closed
    again, so no thread or task keeps the process alive."""
    runner = web.AppRunner(app, **kwargs)
    try:
        await runner.setup()
        options: dict[str, Any] = {"reuse_port": reuse_port or None, "backlog": LISTEN_BACKLOG}
        site = (
            web.TCPSite(runner, host, port, **options)
            if max_connections is None
            else BoundedSite(runner, host, port, limit=max_connections, **options)
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port a started runner listens on (the one picked for port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise ServeError("listener has no TCP address")


class Stopper:
    """SIGTERM/SIGINT handling from the first moment: while starting, a signal cancels the
    start (which then closes what it opened); once serving, it sets `stopped`."""

    def __init__(self) -> None:
        self.stopped = asyncio.Event()
        self.starting: asyncio.Task[Any] | None = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    def stop(self) -> None:
        self.stopped.set()
        if self.starting is not None:
            self.starting.cancel()
            self.starting = None

    def started(self) -> None:
        self.starting = None

    async def wait(self) -> None:
        self.started()
        await self.stopped.wait()


async def wait_for_signal() -> None:
    """Return at the first SIGTERM or SIGINT."""
    await Stopper().wait()


def _report_fatal_signals() -> None:
    """Turn on faulthandler on the process's real stderr. When stderr has been replaced by an
    object without a file descriptor (an embedding application, a captured stream), the
    original descriptor is used; with none at all, fatal signals go unreported."""
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                faulthandler.enable(file=stream)
                return
        except (AttributeError, ValueError, OSError):
            continue


def with_writer_process(settings: Settings) -> Settings:
    """`recorder.writer = "auto"` resolved for serve: a writer process, unless the store is an
    in-memory SQLite database that only this process can see."""
    recorder = settings.recorder
    if recorder.writer != "auto":
        return settings
    mode = "task" if settings.store.db in ("", ":memory:") else "process"
    return settings.model_copy(update={"recorder": recorder.model_copy(update={"writer": mode})})


async def serve(
    settings: Settings, *, announce: bool = True, on_ready: Callable[[], None] | None = None
) -> None:
    """Serve until SIGTERM/SIGINT, then drain: in-flight requests finish and queued rows are
    written before this returns. Prints the one listen line when `announce`; calls `on_ready`
    once listening. A signal while starting stops the start cleanly. Rows the drain could not
    write are a ServeError naming how many."""
    check_listen(settings)
    # A store that cannot be written under SQLite's shared-memory mapping (an immutable or
    # vanished file, a full disk) can end the process with SIGBUS: say so on stderr, with the
    # Python stack, instead of dying without a line.
    _report_fatal_signals()
    stopper = Stopper()
    try:
        await _serve(settings, stopper, announce, on_ready)
    except asyncio.CancelledError:
        if not stopper.stopped.is_set():
            raise
        log.info("stopped while starting")


async def _serve(
    settings: Settings, stopper: Stopper, announce: bool, on_ready: Callable[[], None] | None
) -> None:
    server = settings.server
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUEST_FILTER)
    upstream_label = redact(settings.upstream.url)
    async with contextlib.AsyncExitStack() as running:
        if settings.is_sandbox:
            sandbox = await start_site(create_sandbox_app(), "127.0.0.1", 0, access_log=None)
            running.push_async_callback(sandbox.cleanup)
            url = f"http://127.0.0.1:{bound_port(sandbox)}/v1"
            settings = settings.model_copy(
                update={"upstream": settings.upstream.model_copy(update={"url": url})}
            )
            upstream_label = f"sandbox ({url})"
        app = create_app(with_writer_process(settings))
        open_files, _ = raise_open_file_limit()
        try:
            runner = await start_site(
                app,
                server.host,
                server.port,
                reuse_port=server.workers > 1,
                max_connections=client_connection_limit(open_files, server.max_client_connections),
                keepalive_timeout=server.idle_timeout_s,
                handler_cancellation=True,
                shutdown_timeout=server.shutdown_timeout_s,
                access_log=logging.getLogger("aiohttp.access") if server.access_log else None,
                access_log_class=AccessLog,
            )
        except StoreError as exc:
            raise ServeError(str(exc)) from exc
        except OSError as exc:
            # asyncio's message repeats the address; the errno's own text is the reason.
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise ServeError(f"cannot listen on {server.host}:{server.port}: {reason}") from exc
        running.push_async_callback(runner.cleanup)
        # Everything built so far lives until exit: keep the cyclic GC from re-scanning it
        # (a full collection otherwise walks every module and model object, a latency spike).
        gc.freeze()
        # A young collection every 700 allocations ran ~70 times per 1,000 calls and cost ~16 us
        # a call; at 20,000 the short-lived objects of a call are freed by their refcounts first
        # and collections cost ~10x less in total (bench/README.md).
        gc.set_threshold(YOUNG_GC_THRESHOLD, *gc.get_threshold()[1:])
        host = f"[{server.host}]" if ":" in server.host else server.host
        if on_ready is not None:
            on_ready()
        if announce:
            workers = f" | {server.workers} workers" if server.workers > 1 else ""
            url = f"http://{host}:{bound_port(runner)}"
            dashboard = f" | dashboard {url}/" if settings.dashboard.enabled else ""
            print(
                f"relaylog {__version__} listening on {url}{dashboard} "
                f"| store {redact(settings.store.db)} | upstream {upstream_label}{workers}",
                flush=True,
            )
        await stopper.wait()
        log.info("shutting down: finishing in-flight requests and writing queued rows")
    recorder = app.get(RECORDER)
    if recorder is not None and recorder.lost_on_shutdown:
        raise ServeError(
            f"{recorder.lost_on_shutdown:,} answered exchanges were not logged: the store kept "
            f"failing for recorder.drain_timeout_s ({settings.recorder.drain_timeout_s:g}s) "
            f"after shutdown began"
        )


async def migrate(settings: Settings) -> tuple[str, list[str]]:
    """Open the store once to bring its schema up to date; its description and what was applied."""
    try:
        store = open_store(settings.store.db)
        applied = await store.open()
    except StoreError as exc:
        raise ServeError(str(exc)) from exc
    await store.close()
    return store.description, applied


async def serve_sandbox(host: str, port: int) -> None:
    """Run only the sandbox upstream until SIGTERM/SIGINT."""
    runner = await start_site(create_sandbox_app(), host, port)
    print(f"relaylog sandbox listening on http://{host}:{bound_port(runner)}/v1", flush=True)
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()
