"""The dimensions the analytics page splits its charts and compares its groups by: model,
user or `property:KEY` (any key, as the store has it: lowercased), read from the URL."""

from __future__ import annotations

from collections.abc import Sequence

from multidict import MultiMapping

from storage.errors import QueryError
from storage.query.stats import PROPERTY_PREFIX

# Splits by a column of the request; a property is `property:KEY`.
COLUMN_SPLITS = ("model", "user")
MAX_KEY_CHARS = 256


def split_of(query: MultiMapping[str], name: str = "split") -> str | None:
    """The URL's split: a dimension of COLUMN_SPLITS or `property:KEY`; None for no split."""
    value = query.get(name, "").strip()
    if not value:
        return None
    if value in COLUMN_SPLITS:
        return value
    key = value.removeprefix(PROPERTY_PREFIX).strip()
    if not value.startswith(PROPERTY_PREFIX) or not key or len(key) > MAX_KEY_CHARS:
        raise QueryError(
            f"{name} must be model, user or {PROPERTY_PREFIX}KEY (a key of at most "
            f"{MAX_KEY_CHARS} characters), not {value[:80]!r}"
        )
    return PROPERTY_PREFIX + key.lower()


def split_label(split: str) -> str:
    """How a split reads in a select and a caption: "model", "user", "property prompt_version"."""
    if split.startswith(PROPERTY_PREFIX):
        return f"property {split.removeprefix(PROPERTY_PREFIX)}"
    return split


def split_choices(keys: Sequence[str], chosen: str | None) -> list[tuple[str, str]]:
    """The split select's (value, label): none, model, user and each property key."""
    choices = [("", "no split"), *((name, name) for name in COLUMN_SPLITS)]
    choices += [(PROPERTY_PREFIX + key, f"property {key}") for key in keys]
    if chosen is not None and chosen not in {value for value, _ in choices}:
        choices.append((chosen, split_label(chosen)))
    return choices
