"""The shorthand filters: one definition behind CLI flags, export parameters and OpenAPI."""

from __future__ import annotations

import argparse
import dataclasses

from proxy.api.export import EXPORT_PARAMS
from proxy.api.openapi import document
from proxy.cli.filters import add_filter_args, filter_tree
from storage.query.selection import SHORTHANDS, Selection, selection_of, selection_tree


def test_every_selection_field_has_one_shorthand() -> None:
    fields = [f.name for f in dataclasses.fields(Selection)]
    assert sorted(s.field for s in SHORTHANDS) == sorted(fields)
    assert len({s.name for s in SHORTHANDS}) == len(SHORTHANDS)


def test_export_parameters_and_the_document_use_the_shorthand_names() -> None:
    names = {s.name for s in SHORTHANDS}
    assert names | {"filter", "format", "limit"} == EXPORT_PARAMS
    parameters = document()["paths"]["/v1/export"]["get"]["parameters"]
    assert {p["name"] for p in parameters} == EXPORT_PARAMS
    feedback = next(p for p in parameters if p["name"] == "feedback")
    assert feedback["schema"]["enum"] == ["up", "down", "none", "any"]


def test_cli_flags_are_the_shorthand_names() -> None:
    parser = argparse.ArgumentParser()
    add_filter_args(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    names = {"--" + s.name.replace("_", "-") for s in SHORTHANDS}
    assert flags - {"-h", "--help"} == names | {"--filter"}
    args = parser.parse_args(["--model", "a", "--model", "b", "--feedback", "up"])
    assert filter_tree(args) == {
        "left": {"feedback": {"rating": {"equals": True}}},
        "operator": "and",
        "right": {
            "left": {"request": {"model": {"equals": "a"}}},
            "operator": "or",
            "right": {"request": {"model": {"equals": "b"}}},
        },
    }


def test_selection_of_reads_each_shorthand_by_name() -> None:
    given = {"model": ["a", "b"], "feedback": "up", "since": "2024-05-01"}
    selection = selection_of(lambda s: given.get(s.name, ()) if s.repeat else given.get(s.name))
    assert selection == Selection(feedback="up", models=["a", "b"], since="2024-05-01")
    assert selection_tree(selection) == {
        "left": {
            "left": {"feedback": {"rating": {"equals": True}}},
            "operator": "and",
            "right": {
                "left": {"request": {"model": {"equals": "a"}}},
                "operator": "or",
                "right": {"request": {"model": {"equals": "b"}}},
            },
        },
        "operator": "and",
        "right": {"request": {"created_at": {"gte": "2024-05-01T00:00:00.000Z"}}},
    }
