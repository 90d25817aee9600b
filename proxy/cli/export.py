"""`relaylog export`: matching rows as jsonl, openai-chat or csv, with a progress bar on a
terminal."""

from __future__ import annotations

import argparse
import sys
from contextlib import aclosing
from pathlib import Path

from proxy.cli.filters import add_filter_args, condition_from
from proxy.cli.output import Progress
from proxy.cli.store import Subcommands, add_store_args, store_command
from storage import Store
from storage.query.datasets import require_dataset
from storage.query.export import FORMATS, ExportCounts, export_chunks
from storage.query.filters import Condition
from storage.query.stats import count_requests


def add_commands(sub: Subcommands) -> None:
    export = sub.add_parser("export", help="write matching rows as jsonl, openai-chat or csv")
    add_store_args(export)
    add_filter_args(export)
    export.add_argument(
        "--format",
        choices=tuple(FORMATS),
        default="jsonl",
        help="jsonl: whole rows (default); openai-chat: fine-tuning examples; csv",
    )
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.add_argument("--limit", type=positive, help="at most this many rows, oldest first")
    export.set_defaults(handler=store_command(export_rows))


def positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return number


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
    print(
        f"exported {counts.written:,} of {counts.rows:,} rows{skipped} ({store.description})",
        file=sys.stderr,
    )
    return 0
