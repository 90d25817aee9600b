"""What every store command shares: the --config/--db flags, the settings they give, and running
a command against a store that exists (only `serve` and `migrate` create one)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from proxy.config import Settings, load_settings
from proxy.errors import CommandFailed
from proxy.server import run
from storage import Store, open_store
from storage.errors import NoStore, StoreError

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What `ArgumentParser.add_subparsers()` returns; each command module adds its parsers to it."""
Handler = Callable[[argparse.Namespace], int]
"""A command, set with `parser.set_defaults(handler=...)`: parsed flags -> exit code."""
StoreWork = Callable[[Store, argparse.Namespace], Awaitable[int]]


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (default: ./relaylog.toml if present)")
    parser.add_argument("--db", help="SQLite path or postgresql:// URL (default ./relaylog.db)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings from the config file and environment, with the flags given on top."""
    flags = {
        name: getattr(args, name, None)
        for name in ("host", "port", "db", "upstream", "allow_unauthenticated", "workers")
    }
    return load_settings(getattr(args, "config", None), flags)


def store_command(work: StoreWork) -> Handler:
    """A handler that opens the existing store the flags name, runs `work` on it, then closes it."""

    def handler(args: argparse.Namespace) -> int:
        return run(_on_store(settings_from(args), work, args))

    return handler


async def _on_store(settings: Settings, work: StoreWork, args: argparse.Namespace) -> int:
    try:
        store = open_store(settings.store.db)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from exc
    try:
        # Only serve and migrate create a store: a wrong --db must not leave an empty one behind.
        await store.open(create=False)
    except NoStore as exc:
        await store.close()
        raise CommandFailed(f"{exc}; pass --db, or run relaylog serve or migrate first") from exc
    except StoreError as exc:
        await store.close()
        raise CommandFailed(str(exc)) from exc
    except BaseException:
        await store.close()
        raise
    print(f"relaylog: store {store.description}", file=sys.stderr)
    try:
        return await work(store, args)
    finally:
        await store.close()
