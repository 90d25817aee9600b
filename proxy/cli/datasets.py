"""`relaylog dataset list|create|add|remove|delete`: named sets of logged requests."""

from __future__ import annotations

import argparse
from typing import Any

from proxy.cli.filters import add_filter_args, filter_tree
from proxy.cli.output import nothing_found, print_json_lines, print_table
from proxy.cli.store import Subcommands, add_store_args, store_command
from proxy.errors import CommandFailed
from storage import Store
from storage.query.datasets import (
    change_rows,
    create_dataset,
    delete_dataset,
    list_datasets,
    require_dataset,
    unknown_ids,
)
from storage.query.filters import Condition, compile_filter


def add_commands(sub: Subcommands) -> None:
    dataset = sub.add_parser("dataset", help="create, list, change and delete datasets")
    actions = dataset.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="datasets and their row counts")
    add_store_args(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=store_command(list_command))

    create = actions.add_parser("create", help="a new dataset from ids and/or filter flags")
    create.add_argument("name")
    create.add_argument("--id", action="append", default=[], help="a request id (repeatable)")
    create.add_argument("--description")
    add_store_args(create)
    add_filter_args(create)
    create.set_defaults(handler=store_command(create_command))

    add = actions.add_parser("add", help="add requests by id and/or filter flags")
    add.add_argument("name")
    add.add_argument("ids", nargs="*", metavar="ID")
    add_store_args(add)
    add_filter_args(add)
    add.set_defaults(handler=store_command(add_command))

    remove = actions.add_parser("remove", help="remove requests by id")
    remove.add_argument("name")
    remove.add_argument("ids", nargs="*", metavar="ID")
    add_store_args(remove)
    remove.set_defaults(handler=store_command(remove_command))

    delete = actions.add_parser("delete", help="delete a dataset (the logged requests stay)")
    delete.add_argument("name")
    add_store_args(delete)
    delete.set_defaults(handler=store_command(delete_command))


async def list_command(store: Store, args: argparse.Namespace) -> int:
    datasets = await list_datasets(store)
    if not datasets:
        nothing_found("no datasets", store.description)
    if args.json:
        print_json_lines(datasets)
        return 0
    print_table(
        ["name", "rows", "created_at", "id"],
        [[d["name"], f"{d['requests_count']:,}", d["created_at"], d["id"]] for d in datasets],
    )
    return 0


def _condition(args: argparse.Namespace) -> Condition | None:
    tree = filter_tree(args)
    return None if tree == "all" else compile_filter(tree)


async def _require_ids(store: Store, ids: list[str], name: str) -> None:
    """All or nothing: one unknown id and the dataset is left as it was."""
    unknown = await unknown_ids(store, ids)
    if unknown:
        raise CommandFailed(
            f"no logged request with id {', '.join(unknown)}; dataset {name} was not changed"
        )


async def create_command(store: Store, args: argparse.Namespace) -> int:
    condition = _condition(args)
    await _require_ids(store, args.id, args.name)
    result = await create_dataset(store, args.name, args.description, args.id, condition)
    return _report(args.name, result)


async def add_command(store: Store, args: argparse.Namespace) -> int:
    condition = _condition(args)
    dataset = await require_dataset(store, args.name)
    await _require_ids(store, args.ids, args.name)
    result = await change_rows(store, dataset["id"], args.ids, [], condition)
    return _report(args.name, result)


async def remove_command(store: Store, args: argparse.Namespace) -> int:
    dataset = await require_dataset(store, args.name)
    result = await change_rows(store, dataset["id"], [], args.ids, None)
    return _report(args.name, result)


async def delete_command(store: Store, args: argparse.Namespace) -> int:
    dataset = await require_dataset(store, args.name)
    await delete_dataset(store, dataset["id"])
    print(f"deleted dataset {dataset['name']}")
    return 0


def _report(name: str, result: dict[str, Any]) -> int:
    print(f"dataset {name}: {result['rows']:,} rows (+{result['added']:,} -{result['removed']:,})")
    return 0
