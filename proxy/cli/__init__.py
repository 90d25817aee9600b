"""The `relaylog` command: serve, sandbox, requests, show, stats, export, dataset, migrate."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from proxy import __version__
from proxy.api.models import FeedbackBody
from proxy.app import create_app
from proxy.cli.reports import (
    add_filter_args,
    add_report_commands,
    condition_from,
    dataset_command,
    export_rows,
    show_stats,
)
from proxy.config import Settings, load_settings
from proxy.errors import ApiError, CliError, ConfigError
from proxy.gateway.headers import is_valid_request_id
from proxy.sandbox import create_sandbox_app
from storage import Store, open_store
from storage.errors import DatasetExists, QueryError, StoreError, UnknownDataset
from storage.models import redact
from storage.query.pages import newest_rows

log = logging.getLogger("relaylog")
T = TypeVar("T")
# Room for bursts of new connections (aiohttp's default of 128 makes the rest wait a SYN retry).
LISTEN_BACKLOG = 2048

LIST_COLUMNS = (
    "id",
    "created_at",
    "model",
    "status",
    "outcome",
    "latency_ms",
    "total_tokens",
    "user_id",
)


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


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (default: ./relaylog.toml if present)")
    parser.add_argument("--db", help="SQLite path (default ./relaylog.db)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaylog", description="Self-hosted OpenAI-compatible logging proxy."
    )
    parser.add_argument("--version", action="version", version=f"relaylog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy")
    _store_args(serve)
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8787; 0 picks a free one)")
    serve.add_argument("--upstream", help="upstream base URL, or 'sandbox' for the built-in fake")
    serve.add_argument(
        "--workers", type=int, help="processes sharing the port via SO_REUSEPORT (default 1)"
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow a non-loopback host without proxy keys",
    )

    sandbox = sub.add_parser("sandbox", help="run only the sandbox upstream")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8788)

    requests = sub.add_parser("requests", help="list logged requests, newest first")
    _store_args(requests)
    requests.add_argument("--limit", type=int, default=20)
    requests.add_argument("--json", action="store_true", help="one JSON object per line")
    add_filter_args(requests)

    show = sub.add_parser("show", help="print one logged exchange as JSON")
    _store_args(show)
    show.add_argument("id")

    migrate = sub.add_parser("migrate", help="bring the store's schema up to date")
    _store_args(migrate)

    feedback = sub.add_parser("feedback", help="rate a logged request up or down")
    _store_args(feedback)
    feedback.add_argument("id")
    feedback.add_argument("rating", choices=("up", "down"))
    feedback.add_argument("--comment", help="optional note stored with the rating")

    add_report_commands(sub, _store_args)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {
        name: getattr(args, name, None)
        for name in ("host", "port", "db", "upstream", "allow_unauthenticated", "workers")
    }
    return load_settings(getattr(args, "config", None), flags)


async def _start_site(
    app: web.Application, host: str, port: int, reuse_port: bool = False, **kwargs: Any
) -> web.AppRunner:
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=LISTEN_BACKLOG)
    await site.start()
    return runner


def _bound_port(runner: web.AppRunner) -> int:
    server = runner.server
    assert server is not None
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    raise CliError("listener has no TCP address")


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _check_listen(settings: Settings) -> None:
    server = settings.server
    if (
        not is_loopback(server.host)
        and not settings.auth.proxy_keys
        and not server.allow_unauthenticated
    ):
        raise CliError(
            f"refusing to listen on {server.host} without proxy keys: set RELAYLOG_AUTH_PROXY_KEYS "
            "or pass --allow-unauthenticated"
        )


async def serve(settings: Settings, worker: int = 0) -> None:
    server = settings.server
    _check_listen(settings)
    sandbox_runner = None
    upstream_label = redact(settings.upstream.url)
    if settings.is_sandbox:
        sandbox_runner = await _start_site(create_sandbox_app(), "127.0.0.1", 0, access_log=None)
        url = f"http://127.0.0.1:{_bound_port(sandbox_runner)}/v1"
        settings = settings.model_copy(
            update={"upstream": settings.upstream.model_copy(update={"url": url})}
        )
        upstream_label = f"sandbox ({url})"
    try:
        runner = await _start_site(
            create_app(settings),
            server.host,
            server.port,
            reuse_port=server.workers > 1,
            handler_cancellation=True,
            shutdown_timeout=server.shutdown_timeout_s,
            access_log=logging.getLogger("aiohttp.access") if server.access_log else None,
        )
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot listen on {server.host}:{server.port}: {exc.strerror}") from exc
    # Everything built so far lives until exit: keep the cyclic GC from re-scanning it
    # (a full collection otherwise walks every module and model object, a latency spike).
    gc.freeze()
    host = f"[{server.host}]" if ":" in server.host else server.host
    if worker == 0:
        workers = f" | {server.workers} workers" if server.workers > 1 else ""
        print(
            f"relaylog {__version__} listening on http://{host}:{_bound_port(runner)} "
            f"| store {redact(settings.store.db)} | upstream {upstream_label}{workers}",
            flush=True,
        )
    try:
        await _wait_for_signal()
        log.info("shutting down: finishing in-flight requests and writing queued rows")
    finally:
        await runner.cleanup()
        if sandbox_runner is not None:
            await sandbox_runner.cleanup()


async def migrate(settings: Settings) -> tuple[str, list[str]]:
    """Open the store once to bring its schema up to date; its description and what was applied."""
    store = open_store(settings.store.db)
    try:
        applied = await store.open()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    await store.close()
    return store.description, applied


def serve_workers(settings: Settings) -> int:
    """Fork `server.workers` processes that each run serve() on the same port (SO_REUSEPORT).

    Migrations run once here, before the fork. SIGTERM/SIGINT are passed on to every worker,
    each drains its own log queue, and the exit code is the first non-zero one of the workers.
    A worker that fails early (port taken, store error) stops the others.
    """
    _check_listen(settings)
    if settings.server.port == 0:
        raise CliError("--workers needs a fixed --port: every worker binds the same one")
    _run(migrate(settings))
    sys.stdout.flush()
    children: list[int] = []
    for index in range(settings.server.workers):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run(serve(settings, worker=index))
            except (CliError, ConfigError) as exc:
                print(f"relaylog: worker {index}: {exc}", file=sys.stderr)
                code = 2
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)

    def relay(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, relay)
    signal.signal(signal.SIGINT, relay)
    result = 0
    while children:
        pid, status = os.wait()
        children.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and result == 0:
            result = code if code > 0 else 1
            relay(signal.SIGTERM, None)
    return result


async def sandbox(host: str, port: int) -> None:
    runner = await _start_site(create_sandbox_app(), host, port)
    print(f"relaylog sandbox listening on http://{host}:{_bound_port(runner)}/v1", flush=True)
    try:
        await _wait_for_signal()
    finally:
        await runner.cleanup()


async def with_store(settings: Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    store = open_store(settings.store.db)
    try:
        await store.open()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    try:
        return await work(store)
    finally:
        await store.close()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


async def list_requests(store: Store, args: argparse.Namespace) -> int:
    condition = condition_from(args)
    rows = await newest_rows(store, condition, LIST_COLUMNS, args.limit)
    if args.json:
        for row in rows:
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
        return 0
    table = [list(LIST_COLUMNS), *[[_cell(r[c]) for c in LIST_COLUMNS] for r in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(LIST_COLUMNS))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    return 0


async def show_request(store: Store, request_id: str) -> int:
    row = await store.get_request(request_id)
    if row is None:
        print(f"relaylog: no logged request with id {request_id!r}", file=sys.stderr)
        return 1
    sys.stdout.write(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def give_feedback(store: Store, args: argparse.Namespace) -> int:
    if not is_valid_request_id(args.id):
        raise CliError(f"{args.id!r} is not a request id (1-128 of [A-Za-z0-9._:@-])")
    try:
        body = FeedbackBody(rating=args.rating == "up", comment=args.comment)
    except ValidationError as exc:
        raise CliError(f"invalid feedback: {exc.errors()[0]['msg']}") from exc
    if not await store.request_exists(args.id):
        print(f"relaylog: no logged request with id {args.id!r}", file=sys.stderr)
        return 1
    row = await store.upsert_feedback(args.id, body.rating, body.comment)
    print(f"{args.id}: {args.rating} (updated {row['updated_at']})")
    return 0


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop when it is installed (the `speed` extra), else on asyncio's loop."""
    if importlib.util.find_spec("uvloop") is None:
        return asyncio.run(coro)
    import uvloop

    return uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.server").addFilter(MALFORMED_REQUEST_FILTER)
    try:
        if args.command == "sandbox":
            _run(sandbox(args.host, args.port))
            return 0
        settings = settings_from(args)
        if args.command == "serve":
            if settings.server.workers > 1:
                return serve_workers(settings)
            _run(serve(settings))
            return 0
        if args.command == "requests":
            return int(_run(with_store(settings, lambda s: list_requests(s, args))))
        if args.command == "show":
            return int(_run(with_store(settings, lambda s: show_request(s, args.id))))
        if args.command == "feedback":
            return int(_run(with_store(settings, lambda s: give_feedback(s, args))))
        if args.command == "migrate":
            description, applied = _run(migrate(settings))
            names = ", ".join(applied) if applied else "none pending"
            print(f"{description}: schema up to date (applied: {names})")
            return 0
        reports = {"stats": show_stats, "export": export_rows, "dataset": dataset_command}
        if args.command in reports:
            report = reports[args.command]
            return int(_run(with_store(settings, lambda s: report(s, args))))
    except (CliError, ConfigError, ApiError, QueryError, UnknownDataset, DatasetExists) as exc:
        print(f"relaylog: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)
