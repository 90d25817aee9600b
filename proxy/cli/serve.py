"""`relaylog serve`: run the proxy, one process or `--workers` sharing the port."""

from __future__ import annotations

import argparse

from proxy.cli.store import Subcommands, add_store_args, settings_from
from proxy.server import run, serve
from proxy.supervisor import serve_workers


def add_commands(sub: Subcommands) -> None:
    parser = sub.add_parser("serve", help="run the proxy")
    add_store_args(parser)
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8787; 0 picks a free one)")
    parser.add_argument("--upstream", help="upstream base URL, or 'sandbox' for the built-in fake")
    parser.add_argument(
        "--workers", type=int, help="processes sharing the port via SO_REUSEPORT (default 1)"
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="allow a non-loopback host without proxy keys",
    )
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if settings.server.workers > 1:
        return serve_workers(settings)
    run(serve(settings))
    return 0
