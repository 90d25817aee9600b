"""The filter of a dashboard URL: shorthand parameters, as GET /v1/export takes them -> a tree.

A view is a link: `?feedback=down&score=accuracy>90&model=gpt-4o-mini&since=24h` means the same
on every page, in `relaylog requests` and in GET /v1/export. Beyond the export's shorthands:
`status` (a code or a class such as 5xx), `q` (text in the prompt or the answer), `from`/`to`
(custom times, with `since=custom`) and `filter` (any Helicone filter tree as JSON, ANDed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from multidict import MultiMapping

from storage.errors import FilterError
from storage.models import OUTCOMES
from storage.query.filters import conjoin
from storage.query.selection import FEEDBACK, SHORTHANDS, selection_of, selection_tree

CUSTOM = "custom"
# The time presets of the filter bar: (value of `since`, label).
PRESETS = (("", "All time"), ("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"),
           ("30d", "Last 30 days"), (CUSTOM, "Custom range"))  # fmt: skip
STATUS = re.compile(r"^([1-5])xx$|^([1-5]\d\d)$")
MAX_TEXT = 200
EXTRA = ("status", "q", "from", "to", "filter")
FILTER_PARAMS = frozenset({*(s.name for s in SHORTHANDS), *EXTRA})


@dataclass(frozen=True, slots=True)
class UrlFilter:
    """The URL's filter: its parameters (non-empty, in order) and the tree they mean."""

    params: tuple[tuple[str, str], ...]
    tree: Any

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.params if key == name]

    def value(self, name: str) -> str:
        found = self.values(name)
        return found[0] if found else ""

    @property
    def query(self) -> str:
        """The canonical query string, without `?`; '' for no filter."""
        return urlencode(self.params)

    def with_params(self, extra: Iterable[tuple[str, str]]) -> str:
        """This filter's query string followed by `extra` parameters (page state)."""
        return urlencode([*self.params, *extra])


def _status(text: str) -> Any:
    match = STATUS.match(text.strip())
    if not match:
        raise FilterError("status", f"{text!r}: expected a status code such as 429 or a class: 5xx")
    if match.group(1):
        low = int(match.group(1)) * 100
        return {"request": {"status": {"gte": low, "lt": low + 100}}}
    return {"request": {"status": {"equals": int(match.group(2))}}}


def _text(text: str) -> Any:
    if len(text) > MAX_TEXT:
        raise FilterError("q", f"search for at most {MAX_TEXT} characters")
    return {
        "left": {"request": {"request_body": {"contains": text}}},
        "operator": "or",
        "right": {"request": {"response_body": {"contains": text}}},
    }


def _tree_param(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FilterError("filter", f"not valid JSON: {exc}") from None


def filter_params(query: MultiMapping[str]) -> tuple[tuple[str, str], ...]:
    """The filter parameters of `query` that have a value, in order."""
    kept = [(k, v.strip()) for k, v in query.items() if k in FILTER_PARAMS and v.strip()]
    if not any(k == "since" and v == CUSTOM for k, v in kept):
        kept = [(k, v) for k, v in kept if k not in ("from", "to")]
    return tuple(kept)


def url_filter(query: MultiMapping[str], now: float | None = None) -> UrlFilter:
    """The filter tree of a dashboard URL's query; FilterError names a bad parameter."""
    params = filter_params(query)
    got = UrlFilter(params, "all")
    since = got.value("since")
    selection = selection_of(
        lambda s: got.values(s.name) if s.repeat else (got.value(s.name) or None)
    )
    if since == CUSTOM:
        selection.since, selection.until = got.value("from") or None, got.value("to") or None
    nodes: list[Any] = [selection_tree(selection, now)]
    nodes += [_status(text) for text in got.values("status")]
    nodes += [_text(text) for text in got.values("q")]
    nodes += [_tree_param(text) for text in got.values("filter")]
    return UrlFilter(params, conjoin(*nodes))


def filter_bar(filt: UrlFilter) -> dict[str, Any]:
    """What templates/_filters.html needs: the URL's filter and the choices it offers."""
    return {
        "filt": filt,
        "presets": PRESETS,
        "outcomes": OUTCOMES,
        "feedback_choices": tuple(FEEDBACK),
    }


def unparsed(query: MultiMapping[str]) -> UrlFilter:
    """The URL's filter parameters without their tree, for a page that shows a bad filter."""
    return UrlFilter(filter_params(query), "all")
