"""`relaylog migrate`: bring the store's schema up to date."""

from __future__ import annotations

import argparse

from proxy.cli.store import Subcommands, add_store_args, settings_from
from proxy.server import migrate, run


def add_commands(sub: Subcommands) -> None:
    parser = sub.add_parser("migrate", help="bring the store's schema up to date")
    add_store_args(parser)
    parser.set_defaults(handler=migrate_command)


def migrate_command(args: argparse.Namespace) -> int:
    description, applied = run(migrate(settings_from(args)))
    names = ", ".join(applied) if applied else "none pending"
    print(f"{description}: schema up to date (applied: {names})")
    return 0
