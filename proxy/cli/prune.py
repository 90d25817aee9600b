"""`relaylog prune`: apply retention now, or see what it would delete."""

from __future__ import annotations

import argparse
import sys
import time

import orjson

from proxy.cli.store import Subcommands, add_store_args, settings_from, store_command
from proxy.retention import cutoffs
from storage import Store
from storage.models import utc_iso
from storage.query.selection import AGO, UNIT_S
from storage.retention import prune


def span(text: str) -> float:
    """A span such as 30d, 12h, 2w or 90m, in seconds (argparse type)."""
    match = AGO.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a span like 30d, 12h, 2w or 90m")
    return int(match.group(1)) * UNIT_S[match.group(2)]


def add_commands(sub: Subcommands) -> None:
    parser = sub.add_parser(
        "prune", help="delete old exchanges and clear old bodies (store.retention_days)"
    )
    add_store_args(parser)
    parser.add_argument(
        "--older-than", type=span, metavar="SPAN", help="delete exchanges older than this, e.g. 30d"
    )
    parser.add_argument(
        "--bodies-older-than",
        type=span,
        metavar="SPAN",
        help="clear request and response bodies older than this, keeping the metadata",
    )
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.set_defaults(handler=store_command(prune_command))


async def prune_command(store: Store, args: argparse.Namespace) -> int:
    """Prune by the flags, or by the retention settings when no flag is given."""
    if args.older_than is None and args.bodies_older_than is None:
        before, bodies = cutoffs(settings_from(args).store)
        if before is None and bodies is None:
            print(
                "relaylog: nothing to prune: pass --older-than / --bodies-older-than or set "
                "store.retention_days / store.body_retention_days",
                file=sys.stderr,
            )
            return 2
    else:
        now = time.time()
        before = None if args.older_than is None else utc_iso(now - args.older_than)
        bodies = None if args.bodies_older_than is None else utc_iso(now - args.bodies_older_than)
    report = await prune(store, before, bodies, dry_run=args.dry_run)
    if args.json:
        sys.stdout.write(orjson.dumps(report.as_dict()).decode() + "\n")
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{store.description}: {verb} {report.requests:,} exchanges"
        + (f" created before {before}" if before else "")
        + f", {'would clear' if args.dry_run else 'cleared'} {report.bodies:,} bodies"
        + (f" before {bodies}" if bodies else "")
        + ("" if args.dry_run else f" ({report.batches:,} batches)")
        + (
            f"; earlier exchanges of reused ids: {verb} {report.history:,}, "
            f"{'would clear' if args.dry_run else 'cleared'} {report.history_bodies:,} bodies"
            if report.history or report.history_bodies
            else ""
        )
    )
    return 0
