"""The query layer in the terminal: filter flags, stats, exports with a progress bar, datasets."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import aclosing
from pathlib import Path
from typing import IO, Any

import orjson

from storage import Store
from storage.errors import QueryError
from storage.query.datasets import (
    change_rows,
    create_dataset,
    delete_dataset,
    list_datasets,
    require_dataset,
    unknown_ids,
)
from storage.query.export import FORMATS, ExportCounts, export_chunks
from storage.query.filters import Condition, compile_filter, conjoin
from storage.query.selection import FEEDBACK, Selection, selection_tree
from storage.query.stats import PERCENTILES, check_dimensions, count_requests, request_stats

PROGRESS_EVERY_S = 0.1
BAR_WIDTH = 24


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """The filter flags `requests`, `stats`, `export` and `dataset` share."""
    group = parser.add_argument_group("filters (repeat a flag to match any/all of its values)")
    group.add_argument("--feedback", choices=tuple(FEEDBACK), help="rated up, down, none or any")
    group.add_argument("--model", action="append", default=[], help="model (any of)")
    group.add_argument("--user", action="append", default=[], help="user id (any of)")
    group.add_argument("--session", action="append", default=[], help="session id (any of)")
    group.add_argument("--outcome", action="append", default=[], help="ok, upstream_error, ...")
    group.add_argument(
        "--property", action="append", default=[], metavar="KEY=VALUE", help="(all of)"
    )
    group.add_argument(
        "--score", action="append", default=[], metavar="'NAME>N'", help="e.g. 'accuracy>90'"
    )
    group.add_argument("--since", help="ISO date/time, or a span ago: 30m, 24h, 7d, 2w")
    group.add_argument("--until", help="ISO date/time, or a span ago (exclusive)")
    group.add_argument("--dataset", metavar="NAME", help="rows of this dataset")
    group.add_argument("--filter", metavar="JSON", help="a Helicone filter tree, ANDed in")


def filter_tree(args: argparse.Namespace) -> Any:
    """The filter tree the flags describe ("all" when none are given)."""
    selection = Selection(
        feedback=args.feedback,
        models=args.model,
        users=args.user,
        sessions=args.session,
        outcomes=args.outcome,
        properties=args.property,
        scores=args.score,
        since=args.since,
        until=args.until,
        dataset=args.dataset,
    )
    tree: Any = "all"
    if args.filter:
        try:
            tree = orjson.loads(args.filter)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"--filter is not valid JSON: {exc}") from None
    return conjoin(tree, selection_tree(selection))


def condition_from(args: argparse.Namespace) -> Condition:
    return compile_filter(filter_tree(args))


def _money(value: float) -> str:
    return f"${value:,.4f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _summary(stats: dict[str, Any]) -> None:
    latency, feedback = stats["latency_ms"], stats["feedback"]
    print(
        f"requests {stats['requests']:,}  errors {stats['errors']:,} "
        f"({_percent(stats['error_rate'])})  cost {_money(stats['cost_usd'])}"
    )
    print(
        f"latency ms  avg {_ms(latency['avg'])}  "
        + "  ".join(f"p{p} {_ms(latency[f'p{p}'])}" for p in PERCENTILES)
    )
    tokens = stats["tokens"]
    print(f"tokens  prompt {tokens['prompt']:,}  completion {tokens['completion']:,}")
    print(
        f"feedback  {feedback['count']:,} rated, {feedback['positive']:,} up, "
        f"{feedback['negative']:,} down ({_percent(feedback['positive_rate'])} positive)"
    )
    for name, score in stats["scores"].items():
        print(
            f"score {name}  avg {score['avg']:.3f}  min {score['min']}  max {score['max']}  "
            f"(n={score['count']:,})"
        )


async def show_stats(store: Store, args: argparse.Namespace) -> int:
    check_dimensions(args.by)
    stats = await request_stats(store, condition_from(args), args.by)
    if args.json:
        sys.stdout.write(orjson.dumps(stats).decode() + "\n")
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
                    _ms(group["latency_ms"]["p50"]),
                    _ms(group["latency_ms"]["p90"]),
                    _money(group["cost_usd"]),
                    f"{group['feedback']['count']:,}",
                    _percent(group["feedback"]["positive_rate"]),
                ]
                for group in stats["groups"]
            ],
        )
    return 0


class Progress:
    """A one-line progress bar on a terminal stream, redrawn at most every 0.1 s."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream = stream
        self.total = total
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.drawn < PROGRESS_EVERY_S:
            return
        self.drawn = now
        share = done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * min(share, 1.0))
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\rexporting [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {share:6.1%} "
            f"{done:,}/{self.total:,} rows  {rate:,.0f} rows/s"
        )
        if final:
            self.stream.write("\n")
        self.stream.flush()


async def _count(store: Store, condition: Condition, limit: int | None) -> int:
    total = await count_requests(store, condition)
    return total if limit is None else min(total, limit)


async def export_rows(store: Store, args: argparse.Namespace) -> int:
    condition = condition_from(args)
    if args.dataset:
        await require_dataset(store, args.dataset)
    counts = ExportCounts()
    progress = None
    if sys.stderr.isatty():
        progress = Progress(sys.stderr, await _count(store, condition, args.limit))
    # The CLI's loop runs nothing else, so blocking file writes hold nobody up.
    path = None if args.output in (None, "-") else Path(args.output)
    output = sys.stdout.buffer if path is None else path.open("wb")
    try:
        chunks = export_chunks(store, condition, args.format, counts, limit=args.limit)
        async with aclosing(chunks):
            async for chunk in chunks:
                output.write(chunk)
                if progress is not None:
                    progress.update(counts.rows)
    finally:
        output.flush()
        if output is not sys.stdout.buffer:
            output.close()
    if progress is not None:
        progress.update(counts.rows, final=True)
    skipped = f", skipped {counts.skipped:,} that are not chat examples" if counts.skipped else ""
    print(f"exported {counts.written:,} of {counts.rows:,} rows{skipped}", file=sys.stderr)
    return 0


async def dataset_command(store: Store, args: argparse.Namespace) -> int:
    action = args.action
    if action == "list":
        datasets = await list_datasets(store)
        if args.json:
            for dataset in datasets:
                sys.stdout.write(orjson.dumps(dataset).decode() + "\n")
            return 0
        print_table(
            ["name", "rows", "created_at", "id"],
            [[d["name"], f"{d['requests_count']:,}", d["created_at"], d["id"]] for d in datasets],
        )
        return 0
    tree = filter_tree(args) if action in ("create", "add") else "all"
    condition = None if tree == "all" else compile_filter(tree)
    ids = list(args.id if action == "create" else getattr(args, "ids", []))
    unknown = await unknown_ids(store, ids) if action in ("create", "add") else []
    if action == "create":
        result = await create_dataset(store, args.name, args.description, ids, condition)
    else:
        dataset = await require_dataset(store, args.name)
        if action == "delete":
            await delete_dataset(store, dataset["id"])
            print(f"deleted dataset {dataset['name']}")
            return 0
        add, remove = (ids, []) if action == "add" else ([], ids)
        result = await change_rows(store, dataset["id"], add, remove, condition)
    print(
        f"dataset {args.name}: {result['rows']:,} rows "
        f"(+{result['added']:,} -{result['removed']:,})"
    )
    if unknown:
        print(f"relaylog: no logged request with id {', '.join(unknown)}", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return number


def add_report_commands(sub: Any, store_args: Any) -> None:
    """The `stats`, `export` and `dataset` subcommands (argparse subparsers action `sub`)."""
    stats = sub.add_parser("stats", help="totals, latency, cost, feedback and scores")
    store_args(stats)
    add_filter_args(stats)
    stats.add_argument(
        "--by",
        action="append",
        default=[],
        metavar="DIMENSION",
        help="group by day, model, user, outcome, path or property:NAME (repeatable)",
    )
    stats.add_argument("--json", action="store_true", help="print the stats as one JSON object")

    export = sub.add_parser("export", help="write matching rows as jsonl, openai-chat or csv")
    store_args(export)
    add_filter_args(export)
    export.add_argument("--format", choices=tuple(FORMATS), default="jsonl")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.add_argument("--limit", type=_positive, help="at most this many rows, oldest first")

    dataset = sub.add_parser("dataset", help="create, list, change and delete datasets")
    actions = dataset.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="datasets and their row counts")
    store_args(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    create = actions.add_parser("create", help="a new dataset from ids and/or filter flags")
    create.add_argument("name")
    create.add_argument("--id", action="append", default=[], help="a request id (repeatable)")
    create.add_argument("--description")
    for name, help_text in (
        ("add", "add requests by id and/or filter flags"),
        ("remove", "remove requests by id"),
        ("delete", "delete a dataset (the logged requests stay)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("name")
        if name != "delete":
            action.add_argument("ids", nargs="*", metavar="ID")
    for name, action in actions.choices.items():
        if name != "list":
            store_args(action)
        if name in ("create", "add"):
            add_filter_args(action)
