"""What every store command shares: the --config/--db flags, the settings they give, and running
a command against the opened store."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from proxy.config import Settings, load_settings
from proxy.errors import CliError
from proxy.server import run
from storage import Store, open_store
from storage.errors import StoreError

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `ArgumentParser.add_subparsers()` returns; each command module adds its parsers to it."""
Handler = Callable[[argparse.Namespace], int]
"""A command, set with `parser.set_defaults(handler=...)`: parsed flags -> exit code."""
StoreWork = Callable[[Store, argparse.Namespace], Awaitable[int]]


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (default: ./relaylog.toml if present)")
    parser.add_argument("--db", help="SQLite path (default ./relaylog.db)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the config file and environment, with the flags given on top."""
    flags = {
        name: getattr(args, name, None)
        for name in ("host", "port", "db", "upstream", "allow_unauthenticated", "workers")
    }
    return load_settings(getattr(args, "config", None), flags)


def store_command(work: StoreWork) -> Handler:
    """A handler that opens the store the flags name, runs `work` on it, then closes it."""

    def handler(args: argparse.Namespace) -> int:
        return run(_on_store(settings_from(args), work, args))

    return handler


async def _on_store(settings: Settings, work: StoreWork, args: argparse.Namespace) -> int:
    store = open_store(settings.store.db)
    try:
        await store.open()
    except StoreError as exc:
        raise CliError(str(exc)) from exc
    try:
        return await work(store, args)
    finally:
        await store.close()
