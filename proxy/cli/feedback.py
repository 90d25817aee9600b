"""`relaylog feedback`: rate a logged request up or down from the terminal."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from proxy.api.models import FeedbackBody
from proxy.cli.output import nothing_found
from proxy.cli.store import Subcommands, add_store_args, store_command
from proxy.errors import CliError
from proxy.gateway.headers import is_valid_request_id
from storage import Store
from storage.models import UNCHANGED


def add_commands(sub: Subcommands) -> None:
    parser = sub.add_parser("feedback", help="rate a logged request up or down")
    add_store_args(parser)
    parser.add_argument("id")
    parser.add_argument("rating", choices=("up", "down"))
    comment = parser.add_mutually_exclusive_group()
    comment.add_argument("--comment", help="note stored with the rating (default: keep the note)")
    comment.add_argument(
        "--clear-comment", action="store_true", help="remove the note stored with the rating"
    )
    parser.set_defaults(handler=feedback_command)


def _body(args: argparse.Namespace) -> FeedbackBody:
    """The feedback the flags give; a usage error (exit 2) before any store is opened."""
    if not is_valid_request_id(args.id):
        raise CliError(f"{args.id!r} is not a request id (1-128 of [A-Za-z0-9._:@-])")
    try:
        return FeedbackBody(rating=args.rating == "up", comment=args.comment)
    except ValidationError as exc:
        raise CliError(f"invalid feedback: {exc.errors()[0]['msg']}") from exc


def feedback_command(args: argparse.Namespace) -> int:
    _body(args)
    return store_command(give_feedback)(args)


async def give_feedback(store: Store, args: argparse.Namespace) -> int:
    body = _body(args)
    if not await store.request_exists(args.id):
        nothing_found(f"no logged request with id {args.id!r}", store.description)
        return 1
    comment = None if args.clear_comment else UNCHANGED if args.comment is None else body.comment
    row = await store.upsert_feedback(args.id, body.rating, comment)
    print(f"{args.id}: {args.rating} (updated {row['updated_at']})")
    return 0
