"""Shorthand filters (`--feedback up`, `--property k=v`, `--score 'accuracy>90'`) as a filter tree.

SHORTHANDS names them once: the CLI's filter flags, GET /v1/export's query parameters and
the OpenAPI document are made from it. Repeating model, user, session or outcome means any
of them; repeating property or score means all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.errors import FilterError
from storage.models import utc_iso
from storage.query.filters import NULL, conjoin, parse_time

FEEDBACK = {
    "up": ("equals", True),
    "down": ("equals", False),
    "none": ("equals", NULL),
    "any": ("not-equals", NULL),
}
SCORE_TEST = re.compile(r"^\s*(.+?)\s*(>=|<=|!=|==|=|>|<)\s*(\S.*?)\s*$")
SCORE_OPS = {
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
    "=": "equals",
    "==": "equals",
    "!=": "not-equals",
}
AGO = re.compile(r"^(\d{1,6})([mhdw])$")
UNIT_S = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(slots=True)
class Selection:
    """The shorthand filters; empty means all rows."""

    feedback: str | None = None
    models: Sequence[str] = ()
    response_models: Sequence[str] = ()
    users: Sequence[str] = ()
    sessions: Sequence[str] = ()
    outcomes: Sequence[str] = ()
    properties: Sequence[str] = ()
    scores: Sequence[str] = ()
    since: str | None = None
    until: str | None = None
    dataset: str | None = None


@dataclass(frozen=True, slots=True)
class Shorthand:
    """One shorthand filter: its flag and parameter name, the Selection field, how it reads."""

    name: str
    field: str
    help: str
    repeat: bool = False
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


SHORTHANDS: tuple[Shorthand, ...] = (
    Shorthand("feedback", "feedback", "rated up, down, none or any", choices=tuple(FEEDBACK)),
    Shorthand("model", "models", "model the caller asked for (any of)", repeat=True),
    Shorthand(
        "response_model",
        "response_models",
        "model that answered, e.g. a dated snapshot (any of)",
        repeat=True,
    ),
    Shorthand("user", "users", "user id (any of)", repeat=True),
    Shorthand("session", "sessions", "session id (any of)", repeat=True),
    Shorthand("outcome", "outcomes", "ok, upstream_error, ...", repeat=True),
    Shorthand("property", "properties", "(all of)", repeat=True, metavar="KEY=VALUE"),
    Shorthand("score", "scores", "e.g. 'accuracy>90'", repeat=True, metavar="'NAME>N'"),
    Shorthand("since", "since", "ISO date/time, or a span ago: 30m, 24h, 7d, 2w"),
    Shorthand("until", "until", "ISO date/time, or a span ago (exclusive)"),
    Shorthand("dataset", "dataset", "rows of this dataset", metavar="NAME"),
)


def selection_of(value: Callable[[Shorthand], Any]) -> Selection:
    """The Selection whose fields `value` gives per shorthand (a list for repeatable ones)."""
    return Selection(**{shorthand.field: value(shorthand) for shorthand in SHORTHANDS})


def moment(text: str, where: str, now: float | None = None) -> str:
    """An ISO date/time, or a span ago such as 30m, 24h, 7d, 2w, as stored UTC text."""
    ago = AGO.match(text.strip())
    if ago:
        seconds = int(ago.group(1)) * UNIT_S[ago.group(2)]
        # A span reaching before 1970 means the whole log (nothing is logged before it).
        return utc_iso(max((time.time() if now is None else now) - seconds, 0.0))
    try:
        return parse_time(text)
    except (ValueError, OverflowError):
        raise FilterError(where, f"{text!r} is not an ISO date/time or a span like 7d") from None


def _any_of(table: str, column: str, values: Sequence[str]) -> Any:
    tree: Any = "all"
    for value in values:
        node = {table: {column: {"equals": value}}}
        tree = node if tree == "all" else {"left": tree, "operator": "or", "right": node}
    return tree


def _property(text: str) -> dict[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise FilterError("property", f"{text!r}: expected KEY=VALUE")
    return {"properties": {key.strip(): {"equals": value}}}


def _score(text: str) -> dict[str, Any]:
    match = SCORE_TEST.match(text)
    if not match:
        raise FilterError("score", f"{text!r}: expected NAME OP NUMBER, e.g. accuracy>90")
    name, op, value = match.groups()
    try:
        float(value)
    except ValueError:
        raise FilterError("score", f"{text!r}: {value!r} is not a number") from None
    return {"scores": {name: {SCORE_OPS[op]: value}}}


def selection_tree(selection: Selection, now: float | None = None) -> Any:
    """The filter tree for the shorthand filters (validated when compiled)."""
    nodes: list[Any] = []
    if selection.feedback is not None:
        if selection.feedback not in FEEDBACK:
            raise FilterError("feedback", f"expected one of {', '.join(FEEDBACK)}")
        op, value = FEEDBACK[selection.feedback]
        nodes.append({"feedback": {"rating": {op: value}}})
    nodes.append(_any_of("request", "model", selection.models))
    nodes.append(_any_of("request", "response_model", selection.response_models))
    nodes.append(_any_of("request", "user_id", selection.users))
    nodes.append(_any_of("request", "session_id", selection.sessions))
    nodes.append(_any_of("request", "outcome", selection.outcomes))
    nodes.extend(_property(text) for text in selection.properties)
    nodes.extend(_score(text) for text in selection.scores)
    if selection.since:
        nodes.append({"request": {"created_at": {"gte": moment(selection.since, "since", now)}}})
    if selection.until:
        nodes.append({"request": {"created_at": {"lt": moment(selection.until, "until", now)}}})
    if selection.dataset:
        nodes.append({"dataset": {"name": {"equals": selection.dataset}}})
    return conjoin(*nodes)
