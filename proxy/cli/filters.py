"""The filter flags `requests`, `stats`, `export` and `dataset` share, and the filter they give."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from storage.errors import QueryError
from storage.query.filters import Condition, compile_filter, conjoin
from storage.query.selection import FEEDBACK, Selection, selection_tree


def add_filter_args(parser: argparse.ArgumentParser) -> None:
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
