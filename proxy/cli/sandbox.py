"""`relaylog sandbox`: run only the built-in OpenAI-compatible sandbox upstream."""

from __future__ import annotations

import argparse

from proxy.cli.store import Subcommands
from proxy.server import run, serve_sandbox


def add_commands(sub: Subcommands) -> None:
    parser = sub.add_parser("sandbox", help="run only the sandbox upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.set_defaults(handler=sandbox_command)


def sandbox_command(args: argparse.Namespace) -> int:
    run(serve_sandbox(args.host, args.port))
    return 0
