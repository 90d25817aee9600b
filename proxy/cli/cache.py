"""`relaylog cache clear [filters]` and `relaylog cache stats`: the response cache from a shell."""

from __future__ import annotations

import argparse
import re
import time

import orjson

from proxy.cli.store import Subcommands, add_store_args, store_command
from storage import Store
from storage.cache import CacheFilter

DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_s(text: str) -> float:
    """`90`, `90s`, `30m`, `12h` or `7d` as seconds."""
    match = DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 12h or 7d")
    return float(match.group(1)) * UNIT_S[match.group(2)]


def add_commands(sub: Subcommands) -> None:
    """The `cache` command and its actions."""
    cache = sub.add_parser("cache", help="inspect or purge the response cache")
    actions = cache.add_subparsers(dest="action", required=True)
    clear = actions.add_parser(
        "clear", help="delete cache entries: all, or those matching every filter given"
    )
    add_store_args(clear)
    clear.add_argument("--model", help="only entries for this request model")
    clear.add_argument("--path", help="only entries for this path, e.g. /v1/chat/completions")
    clear.add_argument("--seed", help="only entries of this Helicone-Cache-Seed")
    clear.add_argument(
        "--older-than", type=duration_s, metavar="DURATION", help="only entries older than 7d, 12h…"
    )
    stats = actions.add_parser("stats", help="entries and bytes held")
    add_store_args(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    cache.set_defaults(handler=store_command(cache_command))


async def cache_command(store: Store, args: argparse.Namespace) -> int:
    if args.action == "stats":
        held = await store.cache_stats()
        if args.json:
            print(orjson.dumps(held).decode())
        else:
            print(f"{held['entries']} cache entries, {held['bytes']} bytes")
        return 0
    where = CacheFilter(
        model=args.model,
        path=args.path,
        seed=args.seed,
        before=None if args.older_than is None else time.time() - args.older_than,
    )
    deleted = await store.cache_clear(where)
    print(f"deleted {deleted} cache entr{'y' if deleted == 1 else 'ies'}")
    return 0
