"""The `relaylog` command: main() builds the parser from one module per command group and runs
the handler the chosen command set."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.cli import (
    cache,
    datasets,
    export,
    feedback,
    migrate,
    prune,
    requests,
    sandbox,
    serve,
)
from proxy.cli.store import Handler
from proxy.errors import ApiError, CliError, ConfigError, ServeError
from storage.errors import DatasetExists, QueryError, UnknownDataset

# In the order `relaylog --help` lists them.
COMMAND_GROUPS = (serve, sandbox, requests, migrate, feedback, export, datasets, cache, prune)
# Errors a command reports as one line on stderr with exit code 2.
USER_ERRORS = (
    CliError,
    ServeError,
    ConfigError,
    ApiError,
    QueryError,
    UnknownDataset,
    DatasetExists,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaylog", description="Self-hosted OpenAI-compatible logging proxy."
    )
    parser.add_argument("--version", action="version", version=f"relaylog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler: Handler = args.handler
    try:
        return handler(args)
    except USER_ERRORS as exc:
        print(f"relaylog: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
