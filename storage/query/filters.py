"""Helicone's filter tree compiled to one parameterised SQL condition over `requests r`.

A node is `"all"`, `{}` (also all), a branch `{"left", "operator": "and"|"or", "right"}`, or a
leaf `{table: {column: {operator: value}}}`. Tables, columns and operators come from the
allowlists below; every value, property key and score name is a bound `?` parameter. Negative
operators (`not-equals`, `not-contains`) are the exact complement of their positive twin, so a
row with no value (NULL, no property, no feedback) matches them. The value `"null"` with
`equals` / `not-equals` means IS NULL / IS NOT NULL ("has no value" for properties, feedback,
scores and datasets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from storage.errors import FilterError

MAX_DEPTH = 24
MAX_CONDITIONS = 256
# Every node counts, "all" leaves and branches included: a binary tree of MAX_CONDITIONS leaves.
MAX_NODES = 2 * MAX_CONDITIONS
NULL = "null"

Kind = Literal["text", "number", "time", "bool"]

OPERATORS: dict[Kind, frozenset[str]] = {
    "text": frozenset({"equals", "not-equals", "like", "ilike", "contains", "not-contains"}),
    "number": frozenset({"equals", "not-equals", "gt", "gte", "lt", "lte"}),
    "time": frozenset({"equals", "not-equals", "gt", "gte", "lt", "lte"}),
    "bool": frozenset({"equals", "not-equals"}),
}
NEGATED = {"not-equals": "equals", "not-contains": "contains"}
COMPARE = {"equals": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True, slots=True)
class Column:
    """A filterable value: an SQL expression of the allowlist, its kind, and where it lives.

    `related` is the table (with alias) and link of a row set joined to the request, such as
    its feedback; such columns compile to EXISTS subqueries.
    """

    sql: str
    kind: Kind
    related: tuple[str, str] | None = None


@dataclass(slots=True)
class Condition:
    """An SQL boolean expression and its parameters, in order."""

    sql: str
    params: list[Any] = field(default_factory=list)


ALL = Condition("1 = 1")
# A keyed row set's key column and the key's value, e.g. ("p.key", "prompt_version").
Key = tuple[str, str] | None


REQUEST_KINDS: tuple[tuple[str, Kind], ...] = (
    ("id", "text"),
    ("created_at", "time"),
    ("method", "text"),
    ("path", "text"),
    ("model", "text"),
    ("request_model", "text"),
    ("response_model", "text"),
    ("status", "number"),
    ("outcome", "text"),
    ("is_stream", "bool"),
    ("latency_ms", "number"),
    ("ttft_ms", "number"),
    ("prompt_tokens", "number"),
    ("completion_tokens", "number"),
    ("total_tokens", "number"),
    ("cached_tokens", "number"),
    ("cost_usd", "number"),
    ("finish_reason", "text"),
    ("user_id", "text"),
    ("session_id", "text"),
    ("session_path", "text"),
    ("session_name", "text"),
    ("upstream_request_id", "text"),
    ("request_body", "text"),
    ("response_body", "text"),
    ("error", "text"),
)
REQUEST_FIELDS = {name: Column(f"r.{name}", kind) for name, kind in REQUEST_KINDS}
# Helicone's names for the same fields.
HELICONE_ALIASES = {
    "request_id": "id",
    "request_created_at": "created_at",
    "latency": "latency_ms",
    "time_to_first_token": "ttft_ms",
    "cost": "cost_usd",
    "prompt_cache_read_tokens": "cached_tokens",
    "prompt": "request_body",
    "body_model": "response_model",
    "body_tokens": "total_tokens",
    "body_completion": "response_body",
    "session_session_id": "session_id",
    "session_session_name": "session_name",
}
FEEDBACK = ("feedback f", "f.request_id = r.id")
SESSION_FEEDBACK = ("session_feedback sf", "sf.session_id = r.session_id")
DATASET = ("dataset_rows dr JOIN datasets d ON d.id = dr.dataset_id", "dr.request_id = r.id")
RATING = Column("f.rating", "bool", FEEDBACK)

TABLES: dict[str, dict[str, Column]] = {
    "request": REQUEST_FIELDS,
    "request_response_rmt": {**REQUEST_FIELDS, "helicone-score-feedback": RATING},
    "response": {**REQUEST_FIELDS, "model": REQUEST_FIELDS["response_model"]},
    "sessions_request_response_rmt": REQUEST_FIELDS,
    "feedback": {
        "rating": RATING,
        "comment": Column("f.comment", "text", FEEDBACK),
        "created_at": Column("f.created_at", "time", FEEDBACK),
    },
    "session_feedback": {"rating": Column("sf.rating", "bool", SESSION_FEEDBACK)},
    "dataset": {
        "id": Column("d.id", "text", DATASET),
        "name": Column("d.name", "text", DATASET),
    },
}
# Keyed row sets: {"properties": {key: {op: value}}} and {"scores": {name: {op: value}}}.
KEYED: dict[str, tuple[Column, str]] = {
    "properties": (
        Column("p.value", "text", ("request_properties p", "p.request_id = r.id")),
        "p.key",
    ),
    "scores": (Column("s.value", "number", ("scores s", "s.request_id = r.id")), "s.name"),
}


def parse_time(value: str) -> str:
    """An ISO-8601 date or time as the store's fixed-width UTC text (naive means UTC)."""
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _value(kind: Kind, op: str, value: Any, where: str) -> Any:
    """The bound parameter for `value`, checked against the column's kind."""
    if isinstance(value, str) and "\x00" in value:
        raise FilterError(where, "strings may not contain NUL characters")
    if kind == "bool":
        if not isinstance(value, bool):
            raise FilterError(where, 'expected true, false or "null"')
        return int(value)
    if kind == "number":
        if not isinstance(value, str | int | float):
            raise FilterError(where, "expected a finite number")
        try:
            number = float(value)
        except (ValueError, OverflowError):
            raise FilterError(where, f"{value!r} is not a number") from None
        if not math.isfinite(number):
            raise FilterError(where, "expected a finite number")
        return number
    if kind == "time":
        if not isinstance(value, str):
            raise FilterError(where, "expected an ISO-8601 date or time string")
        try:
            return parse_time(value)
        except (ValueError, OverflowError):
            raise FilterError(where, f"{value!r} is not an ISO-8601 date or time") from None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FilterError(where, "expected a string")
    text = str(value)
    if op in ("contains", "not-contains"):
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"
    return text


def _predicate(expr: str, kind: Kind, op: str) -> str:
    """The positive SQL test of `expr` for `op` (one `?`).

    Numbers are compared as DOUBLE PRECISION so integer columns take fractional values in
    every store; `like` is SQL LIKE (case-insensitive for ASCII in SQLite, case-sensitive in
    PostgreSQL), `ilike` and `contains` are case-insensitive everywhere.
    """
    if op == "like":
        return f"{expr} LIKE ?"
    if op == "ilike":
        return f"lower({expr}) LIKE lower(CAST(? AS TEXT))"
    if op == "contains":
        return f"lower({expr}) LIKE lower(CAST(? AS TEXT)) ESCAPE '\\'"
    if kind == "number":
        return f"{expr} {COMPARE[op]} CAST(? AS DOUBLE PRECISION)"
    return f"{expr} {COMPARE[op]} ?"


class Compiler:
    """Walks one tree; counts conditions so a huge tree is refused, not run."""

    def __init__(self) -> None:
        self.conditions = 0
        self.nodes = 0

    def node(self, node: Any, where: str, depth: int = 0) -> Condition:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(where, f"more than {MAX_NODES} nodes")
        if node == "all" or node == {}:
            return ALL
        if not isinstance(node, dict):
            raise FilterError(where, 'expected "all", a branch or a leaf object')
        if {"left", "right", "operator"} & node.keys():
            return self.branch(node, where, depth)
        parts = [self.table(name, spec, f"{where}.{name}") for name, spec in node.items()]
        return _join(parts, "AND")

    def branch(self, node: dict[str, Any], where: str, depth: int) -> Condition:
        if set(node) != {"left", "operator", "right"}:
            raise FilterError(where, "a branch has exactly left, operator and right")
        operator = node["operator"]
        if not isinstance(operator, str) or operator.lower() not in ("and", "or"):
            raise FilterError(f"{where}.operator", 'expected "and" or "or"')
        if depth >= MAX_DEPTH:
            raise FilterError(where, f"nested deeper than {MAX_DEPTH} levels")
        left = self.node(node["left"], f"{where}.left", depth + 1)
        right = self.node(node["right"], f"{where}.right", depth + 1)
        return _join([left, right], operator.upper())

    def table(self, name: str, spec: Any, where: str) -> Condition:
        if not isinstance(spec, dict) or not spec:
            raise FilterError(where, "expected an object of columns")
        if name in KEYED:
            return self.keyed(name, spec, where)
        columns = TABLES.get(name)
        if columns is None:
            raise FilterError(where, f"unknown table; use one of {', '.join(sorted(TABLES))}")
        parts = []
        for column_name, ops in spec.items():
            if name == "request_response_rmt" and column_name in KEYED:
                parts.append(self.keyed(column_name, ops, f"{where}.{column_name}"))
                continue
            column = columns.get(HELICONE_ALIASES.get(str(column_name), str(column_name)))
            if column is None:
                raise FilterError(f"{where}.{column_name}", "unknown column")
            parts.append(self.column(column, None, ops, f"{where}.{column_name}"))
        return _join(parts, "AND")

    def keyed(self, name: str, spec: Any, where: str) -> Condition:
        if not isinstance(spec, dict) or not spec:
            raise FilterError(where, "expected an object of names")
        column, key_sql = KEYED[name]
        parts = []
        for key_name, ops in spec.items():
            if "\x00" in key_name:
                raise FilterError(f"{where}.{key_name!r}", "names may not contain NUL characters")
            key = key_name.lower() if name == "properties" else key_name
            parts.append(self.column(column, (key_sql, key), ops, f"{where}.{key_name}"))
        return _join(parts, "AND")

    def column(self, column: Column, key: Key, ops: Any, where: str) -> Condition:
        if not isinstance(ops, dict) or not ops:
            raise FilterError(where, "expected an object of operators")
        parts = []
        for op, value in ops.items():
            self.conditions += 1
            if self.conditions > MAX_CONDITIONS:
                raise FilterError(where, f"more than {MAX_CONDITIONS} conditions")
            if op not in OPERATORS[column.kind]:
                allowed = ", ".join(sorted(OPERATORS[column.kind]))
                raise FilterError(f"{where}.{op}", f"unknown operator; use one of {allowed}")
            parts.append(_test(column, key, op, value, f"{where}.{op}"))
        return _join(parts, "AND")


def _test(column: Column, key: Key, op: str, value: Any, where: str) -> Condition:
    negative = op in NEGATED
    positive = NEGATED.get(op, op)
    if value == NULL and positive == "equals":
        # "equals null" is the complement of "has a value".
        test, params, negative = f"{column.sql} IS NOT NULL", [], not negative
    else:
        param = _value(column.kind, positive, value, where)
        test, params = _predicate(column.sql, column.kind, positive), [param]
    if column.related is None:
        if negative:
            return Condition(f"{column.sql} IS NULL OR NOT ({test})", params)
        return Condition(test, params)
    table, link = column.related
    clauses, key_params = [link], []
    if key is not None:
        clauses.append(f"{key[0]} = ?")
        key_params.append(key[1])
    exists = f"EXISTS (SELECT 1 FROM {table} WHERE {' AND '.join([*clauses, test])})"
    return Condition(f"NOT {exists}" if negative else exists, [*key_params, *params])


def _join(parts: list[Condition], operator: str) -> Condition:
    if len(parts) == 1:
        return parts[0]
    return Condition(
        f" {operator} ".join(f"({p.sql})" for p in parts), [p for c in parts for p in c.params]
    )


def compile_filter(node: Any, where: str = "filter") -> Condition:
    """The SQL condition (over `requests r`) for a filter tree; FilterError names a bad node."""
    return Compiler().node(node, where)


def conjoin(*nodes: Any) -> Any:
    """A tree that ANDs the given nodes, skipping "all"."""
    kept = [n for n in nodes if n not in ("all", {}, None)]
    if not kept:
        return "all"
    tree = kept[0]
    for node in kept[1:]:
        tree = {"left": tree, "operator": "and", "right": node}
    return tree


# The one string literal compiled conditions hold (contains' ESCAPE clause).
ESCAPE_LITERAL = "'\\'"


def conjuncts(condition: Condition) -> list[Condition]:
    """The parts a compiled condition ANDs together (`(a) AND (b)`, nested ANDs flattened),
    each with its own parameters; a condition that is no AND is its one part."""
    sql = condition.sql
    if "'" in sql.replace(ESCAPE_LITERAL, ""):
        # A string literal (not from compile_filter) could hold what looks like an AND.
        return [condition]
    pieces, depth, start, at = [], 0, 0, 0
    while at < len(sql):
        char = sql[at]
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and sql.startswith(" OR ", at):
            return [condition]
        if depth == 0 and sql.startswith(" AND ", at):
            pieces.append(sql[start:at])
            start = at = at + len(" AND ")
            continue
        at += 1
    pieces.append(sql[start:])
    if len(pieces) == 1:
        if sql.startswith("(") and sql.endswith(")") and _closes_at_end(sql):
            return conjuncts(Condition(sql[1:-1], condition.params))
        return [condition]
    params = iter(condition.params)
    out = []
    for piece in pieces:
        out += conjuncts(Condition(piece, [next(params) for _ in range(piece.count("?"))]))
    return out


def _closes_at_end(sql: str) -> bool:
    """Whether the parenthesis opening `sql` is the one closing it."""
    depth = 0
    for at, char in enumerate(sql):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return at == len(sql) - 1
    return False


TIME_BOUNDS = {f"r.created_at {op} ?": op for op in (">=", ">", "<=", "<")}
# `{"properties": {key: {"equals": value}}}` as _test compiles it, its parameters key and value.
PROPERTY_EQUALS = compile_filter({"properties": {"k": {"equals": "v"}}}).sql


@dataclass(slots=True)
class Parts:
    """A condition as an AND of bounds on created_at (operator, stored time), properties
    that equal a value (key, value), and the rest (ALL when nothing else)."""

    times: list[tuple[str, str]] = field(default_factory=list)
    properties: list[tuple[str, str]] = field(default_factory=list)
    rest: Condition = field(default_factory=lambda: ALL)

    def time_sql(self, column: str) -> tuple[str, list[Any]]:
        """The time bounds over `column` (" AND column >= ?" ...) and their parameters."""
        return "".join(f" AND {column} {op} ?" for op, _ in self.times), [
            stamp for _, stamp in self.times
        ]


def parts(condition: Condition) -> Parts:
    """`condition` cut into Parts, so a read can take the time bounds and property tests to
    the property rows (which carry their request's created_at, migration 011)."""
    found, rest = Parts(), []
    for part in conjuncts(condition):
        op = TIME_BOUNDS.get(part.sql)
        if op is not None and isinstance(part.params[0], str):
            found.times.append((op, part.params[0]))
        elif part.sql == PROPERTY_EQUALS:
            found.properties.append((part.params[0], part.params[1]))
        elif part.sql != ALL.sql:
            rest.append(part)
    if rest:
        found.rest = _join(rest, "AND")
    return found
