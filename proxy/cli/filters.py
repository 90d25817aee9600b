"""The filter flags `requests`, `stats`, `export` and `dataset` share, and the filter they give."""

from __future__ import annotations

import argparse
from typing import Any

import orjson

from storage.errors import QueryError
from storage.query.filters import Condition, compile_filter, conjoin
from storage.query.selection import SHORTHANDS, selection_of, selection_tree


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """A flag per shorthand filter (storage.query.selection.SHORTHANDS), and --filter."""
    group = parser.add_argument_group("filters (repeat a flag to match any/all of its values)")
    for shorthand in SHORTHANDS:
        flag = f"--{shorthand.name.replace('_', '-')}"
        if shorthand.repeat:
            group.add_argument(
                flag, action="append", default=[], metavar=shorthand.metavar, help=shorthand.help
            )
        else:
            group.add_argument(
                flag, choices=shorthand.choices, metavar=shorthand.metavar, help=shorthand.help
            )
    group.add_argument("--filter", metavar="JSON", help="a Helicone filter tree, ANDed in")


def filter_tree(args: argparse.Namespace) -> Any:
    """The filter tree the flags describe ("all" when none are given)."""
    selection = selection_of(lambda shorthand: getattr(args, shorthand.name))
    tree: Any = "all"
    if args.filter:
        try:
            tree = orjson.loads(args.filter)
        except orjson.JSONDecodeError as exc:
            raise QueryError(f"--filter is not valid JSON: {exc}") from None
    return conjoin(tree, selection_tree(selection))


def condition_from(args: argparse.Namespace) -> Condition:
    return compile_filter(filter_tree(args))
