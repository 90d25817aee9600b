"""`relaylog requests`, `show` and `stats`: read the log from the terminal."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from proxy.cli.filters import add_filter_args, condition_from
from proxy.cli.output import (
    cell,
    money,
    ms,
    nothing_found,
    percent,
    print_json_lines,
    print_table,
)
from proxy.cli.store import Subcommands, add_store_args, store_command
from storage import Store
from storage.query.pages import newest_rows
from storage.query.stats import PERCENTILES, check_dimensions, request_stats

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


def add_commands(sub: Subcommands) -> None:
    requests = sub.add_parser("requests", help="list logged requests, newest first")
    add_store_args(requests)
    requests.add_argument("--limit", type=int, default=20)
    requests.add_argument("--json", action="store_true", help="one JSON object per line")
    add_filter_args(requests)
    requests.set_defaults(handler=store_command(list_requests))

    show = sub.add_parser("show", help="print one logged exchange as JSON")
    add_store_args(show)
    show.add_argument("id")
    show.set_defaults(handler=store_command(show_request))

    stats = sub.add_parser("stats", help="totals, latency, cost, feedback and scores")
    add_store_args(stats)
    add_filter_args(stats)
    stats.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="DIMENSION",
        help="group by day, model, response_model, user, outcome, path or property:NAME "
        "(repeatable)",
    )
    stats.add_argument("--json", action="store_true", help="print the stats as one JSON object")
    stats.set_defaults(handler=store_command(show_stats))


async def list_requests(store: Store, args: argparse.Namespace) -> int:
    rows = await newest_rows(store, condition_from(args), LIST_COLUMNS, args.limit)
    if not rows:
        nothing_found("no logged request matches", store.description)
    if args.json:
        print_json_lines(rows)
        return 0
    print_table(list(LIST_COLUMNS), [[cell(r[c]) for c in LIST_COLUMNS] for r in rows])
    return 0


async def show_request(store: Store, args: argparse.Namespace) -> int:
    row = await store.get_request(args.id)
    if row is None:
        nothing_found(f"no logged request with id {args.id!r}", store.description)
        return 1
    sys.stdout.write(orjson.dumps(row, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


async def show_stats(store: Store, args: argparse.Namespace) -> int:
    check_dimensions(args.by)
    stats = await request_stats(store, condition_from(args), args.by)
    if not stats["requests"]:
        nothing_found("no logged request matches", store.description)
    if args.json:
        print_json_lines([stats])
        return 0
    _summary(stats)
    if args.by:
        print()
        header = [*args.by, "requests", "errors", "p50 ms", "p90 ms", "cost", "rated", "up"]
        print_table(
            header,
            [
                [
                    *("-" if v is None else str(v) for v in group["key"].values()),
                    f"{group['requests']:,}",
                    f"{group['errors']:,}",
                    ms(group["latency_ms"]["p50"]),
                    ms(group["latency_ms"]["p90"]),
                    money(group["cost_usd"]),
                    f"{group['feedback']['count']:,}",
                    percent(group["feedback"]["positive_rate"]),
                ]
                for group in stats["groups"]
            ],
        )
    return 0


def _summary(stats: dict[str, Any]) -> None:
    latency, feedback = stats["latency_ms"], stats["feedback"]
    print(
        f"requests {stats['requests']:,}  errors {stats['errors']:,} "
        f"({percent(stats['error_rate'])})  cost {money(stats['cost_usd'])}"
    )
    print(
        f"latency ms  avg {ms(latency['avg'])}  "
        + "  ".join(f"p{p} {ms(latency[f'p{p}'])}" for p in PERCENTILES)
    )
    tokens = stats["tokens"]
    print(f"tokens  prompt {tokens['prompt']:,}  completion {tokens['completion']:,}")
    print(
        f"feedback  {feedback['count']:,} rated, {feedback['positive']:,} up, "
        f"{feedback['negative']:,} down ({percent(feedback['positive_rate'])} positive)"
    )
    sessions = stats["session_feedback"]
    print(
        f"session feedback  {sessions['count']:,} rated, {sessions['positive']:,} up, "
        f"{sessions['negative']:,} down ({percent(sessions['positive_rate'])} positive)"
    )
    for name, score in stats["scores"].items():
        print(
            f"score {name}  avg {score['avg']:.3f}  min {score['min']}  max {score['max']}  "
            f"(n={score['count']:,})"
        )
