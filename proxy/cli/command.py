"""The command line behind main(): the parser built from one module per command group, and run(),
which calls the chosen command's handler and turns every way it can end into one exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.cli import (
    INTERRUPTED,
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
from proxy.errors import ApiError, CliError, CommandFailed, ConfigError, ServeError
from storage.errors import DatasetExists, QueryError, StoreError, UnknownDataset

# In the order `relaylog --help` lists them.
COMMAND_GROUPS = (serve, sandbox, requests, migrate, feedback, export, datasets, cache, prune)
# Exit codes, the same for every command (README, Command line).
OK, FAILED, USAGE = 0, 1, 2
# What a command reports as one line on stderr: a usage problem (a flag, a filter, the config)...
USAGE_ERRORS = (CliError, ConfigError, QueryError, ApiError)
# ...or a command that ran and failed: nothing by that id or name, refused, no store.
FAILURES = (CommandFailed, ServeError, StoreError, UnknownDataset, DatasetExists)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relaylog", description="Self-hosted OpenAI-compatible logging proxy."
    )
    parser.add_argument("--version", action="version", version=f"relaylog {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="relaylog's debug logging")
    parser.add_argument(
        "--log-bodies",
        action="store_true",
        help="debug logging of every library too, the database drivers' statements with their "
        "parameters included: prompts, answers and headers reach stderr (implies -v)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def configure_logging(verbose: bool, log_bodies: bool) -> None:
    """INFO on stderr; `-v` turns relaylog's own loggers to DEBUG. Libraries stay at INFO unless
    `--log-bodies`: aiosqlite logs each statement with its parameters at DEBUG, which holds every
    logged body and header, so they never reach stderr without that separate flag."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.DEBUG if log_bodies else logging.INFO)
    logging.getLogger("relaylog").setLevel(
        logging.DEBUG if verbose or log_bodies else logging.NOTSET
    )


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, args.log_bodies)
    handler: Handler = args.handler
    try:
        return handler(args)
    except USAGE_ERRORS as exc:
        print(f"relaylog: {exc}", file=sys.stderr)
        return USAGE
    except FAILURES as exc:
        print(f"relaylog: {exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`relaylog requests | head`): stop quietly. stdout now points at
        # /dev/null so the interpreter's last flush of it cannot fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return OK
