"""storage.query.analytics: score distributions, top values, negatives, keys, in both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from storage import Row, Store, open_store
from storage.errors import QueryError
from storage.query.analytics import (
    distinct_keys,
    rated_over_time,
    rated_split,
    recent_negatives,
    score_distributions,
    top_values,
)
from storage.query.filters import compile_filter
from storage.query.stats import request_stats
from tests.logbook import fill

ALL = compile_filter("all")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """The hand-built log of tests/logbook.py plus a star rating and two fractional scores."""
    opened = open_store(store_url)
    await opened.open()
    await fill(opened)
    extra: dict[str, dict[str, float]] = {
        "r1": {"edge": 0, "half": 0.5},
        "r2": {"edge": 1, "half": 0.5},
        "r3": {"edge": 10, "stars": 4},
        "r4": {"stars": 4},
        "r5": {"edge": 2.5},
        "r6": {"stars": 2},
    }
    for request_id, scores in extra.items():
        await opened.upsert_scores(request_id, scores)
    yield opened
    await opened.close()


async def test_distinct_keys(store: Store) -> None:
    assert await distinct_keys(store, "properties") == ["app", "note", "prompt_version"]
    assert await distinct_keys(store, "scores") == ["accuracy", "edge", "half", "helpful", "stars"]
    assert await distinct_keys(store, "scores", limit=2) == ["accuracy", "edge"]


async def test_top_models(store: Store) -> None:
    top = await top_values(store, ALL, "model")
    # r4 has no model and is left out; the ties follow in name order.
    assert top == [
        {"value": "gpt-4o-mini", "requests": 2},
        {"value": "gpt-4o", "requests": 1},
        {"value": "my-local-llama", "requests": 1},
        {"value": "text-embedding-3-small", "requests": 1},
    ]
    errors = compile_filter({"request": {"outcome": {"not-equals": "ok"}}})
    assert await top_values(store, errors, "model") == [{"value": "gpt-4o-mini", "requests": 1}]


async def test_top_users_under_a_filter(store: Store) -> None:
    assert [(r["value"], r["requests"]) for r in await top_values(store, ALL, "user")] == [
        ("alice", 2),
        ("bob", 2),
        ("carol", 1),
    ]
    liked = compile_filter({"feedback": {"rating": {"equals": True}}})
    assert [(r["value"], r["requests"]) for r in await top_values(store, liked, "user")] == [
        ("alice", 1),
        ("carol", 1),
    ]
    assert [r["value"] for r in await top_values(store, ALL, "user", limit=1)] == ["alice"]


async def test_top_property_values(store: Store) -> None:
    # Header names are case-insensitive, so the key is too; values are kept verbatim.
    top = await top_values(store, ALL, "property:APP")
    assert top[0] == {"value": "chat", "requests": 3}
    assert {(r["value"], r["requests"]) for r in top[1:]} == {("search", 1), ("Search Engine", 1)}
    # Under a filter the properties are joined to their requests.
    failed = compile_filter({"request": {"status": {"gte": 400}}})
    assert await top_values(store, failed, "property:app") == [{"value": "chat", "requests": 1}]
    assert await top_values(store, ALL, "property:x' OR 1=1 --") == []
    assert await top_values(store, failed, "property:x' OR 1=1 --") == []


@pytest.mark.parametrize(
    ("dimension", "limit", "message"),
    [
        ("outcome; DROP TABLE requests", 10, "cannot list top values"),
        ("property:", 10, "cannot list top values"),
        ("model", 0, "limit must be 1-100"),
        ("model", 101, "limit must be 1-100"),
    ],
)
async def test_top_values_refuse_bad_input(
    store: Store, dimension: str, limit: int, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        await top_values(store, ALL, dimension, limit=limit)


def by_name(distributions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in distributions}


async def test_score_distributions(store: Store) -> None:
    found = await score_distributions(store, ALL)
    # Most-scored names first, ties by name.
    assert [d["name"] for d in found] == ["edge", "accuracy", "stars", "half", "helpful"]
    scores = by_name(found)
    accuracy = scores["accuracy"]
    assert (accuracy["count"], accuracy["min"], accuracy["max"]) == (3, 60.0, 95.0)
    assert accuracy["avg"] == pytest.approx(235 / 3, abs=1e-6)
    # 60..95 spans more than 20 values: ten bins 3.5 wide; 80 falls in [77.5, 81).
    assert [b["count"] for b in accuracy["bins"]] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert accuracy["bins"][5]["label"] == "77.5 to 81"
    # A value on an inner edge belongs to the bin it opens; the maximum to the last bin.
    assert [b["count"] for b in scores["edge"]["bins"]] == [1, 1, 1, 0, 0, 0, 0, 0, 0, 1]
    # Small integer ranges get a bin per value, empty values included.
    assert [(b["label"], b["count"]) for b in scores["stars"]["bins"]] == [
        ("2", 1),
        ("3", 0),
        ("4", 2),
    ]
    assert [(b["label"], b["count"]) for b in scores["helpful"]["bins"]] == [("0", 1), ("1", 1)]
    assert [(b["label"], b["count"]) for b in scores["half"]["bins"]] == [("0.5", 2)]


async def test_score_distributions_under_a_filter(store: Store) -> None:
    mini = compile_filter({"request": {"model": {"equals": "gpt-4o-mini"}}})
    scores = by_name(await score_distributions(store, mini))
    assert set(scores) == {"accuracy", "helpful", "edge", "half", "stars"}
    assert [(b["label"], b["count"]) for b in scores["accuracy"]["bins"]] == [("95", 1)]
    assert [(b["label"], b["count"]) for b in scores["edge"]["bins"]] == [
        (str(v), 1 if v in (0, 10) else 0) for v in range(11)
    ]
    assert len(await score_distributions(store, mini, limit=2)) == 2


async def test_recent_negatives_newest_rating_first(store: Store) -> None:
    await store.write_batch(
        [
            Row(
                id="r7",
                created_at="2024-05-04T09:00:00.000Z",
                method="POST",
                path="/v1/chat/completions",
                model="gpt-4o",
                user_id="dan",
                prompt_preview="Where is my refund?",
                answer_preview="Echo: Where is my refund?",
            )
        ]
    )
    await store.upsert_feedback("r7", False, "did not answer")
    await store.upsert_feedback("r1", True, "still good")
    found = await recent_negatives(store, ALL)
    assert [(n["id"], n["comment"]) for n in found] == [("r7", "did not answer"), ("r2", None)]
    assert found[0] == {
        "id": "r7",
        "created_at": "2024-05-04T09:00:00.000Z",
        "model": "gpt-4o",
        "user_id": "dan",
        "prompt_preview": "Where is my refund?",
        "answer_preview": "Echo: Where is my refund?",
        "rated_at": found[0]["rated_at"],
        "comment": "did not answer",
    }
    assert found[0]["rated_at"] >= found[1]["rated_at"]
    mini = compile_filter({"request": {"model": {"equals": "gpt-4o"}}})
    assert [n["id"] for n in await recent_negatives(store, mini, limit=1)] == ["r7"]
    with pytest.raises(QueryError, match="limit must be 1-100"):
        await recent_negatives(store, ALL, limit=0)


@pytest.mark.parametrize(
    "dimensions",
    [["day"], ["day", "model"], ["day", "user"], ["day", "property:PROMPT_VERSION"], ["model"]],
)
@pytest.mark.parametrize("tree", ["all", {"request": {"status": {"lt": 500}}}])
async def test_rated_over_time_is_request_stats_feedback(
    store: Store, dimensions: list[str], tree: object
) -> None:
    condition = compile_filter(tree)
    stats = await request_stats(store, condition, dimensions)
    expected = {
        tuple(g["key"].values()): (g["feedback"]["count"], g["feedback"]["positive"])
        for g in stats["groups"]
        if g["feedback"]["count"]
    }
    found = await rated_over_time(store, condition, dimensions)
    assert {
        tuple(g["key"].values()): (g["feedback"]["count"], g["feedback"]["positive"]) for g in found
    } == expected
    assert expected, "the log has ratings in every grouping"


async def test_rated_over_time_checks_its_dimensions(store: Store) -> None:
    with pytest.raises(QueryError, match="cannot group by"):
        await rated_over_time(store, ALL, ["day; DROP TABLE feedback"])


def split_counts(groups: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (*g["key"].values(), g["rest"], g["feedback"]["count"], g["feedback"]["positive"])
        for g in groups
    }


@pytest.mark.parametrize(
    ("unit", "by", "top", "expected"),
    [
        ("day", None, 6, {("2024-05-01", False, 2, 1), ("2024-05-03", False, 1, 1)}),
        ("hour", None, 6, {("2024-05-01T10", False, 1, 1), ("2024-05-01T12", False, 1, 0),
                           ("2024-05-03T08", False, 1, 1)}),
        # One rating each: the tie goes to the first name, bob and carol are the rest.
        ("day", "user", 1, {("2024-05-01", "alice", False, 1, 1),
                            ("2024-05-01", None, True, 1, 0), ("2024-05-03", None, True, 1, 1)}),
        ("day", "user", 6, {("2024-05-01", "alice", False, 1, 1),
                            ("2024-05-01", "bob", False, 1, 0),
                            ("2024-05-03", "carol", False, 1, 1)}),
        ("day", "property:Prompt_Version", 1, {("2024-05-01", None, True, 1, 1),
                                               ("2024-05-01", "v2", False, 1, 0),
                                               ("2024-05-03", "v2", False, 1, 1)}),
        # No rated row has a note: every rating is "no value", none is the rest.
        ("day", "property:note", 6, {("2024-05-01", None, False, 2, 1),
                                     ("2024-05-03", None, False, 1, 1)}),
    ],
)  # fmt: skip
async def test_rated_split_keeps_the_top_values_and_sums_the_rest(
    store: Store, unit: str, by: str | None, top: int, expected: set[tuple[Any, ...]]
) -> None:
    assert split_counts(await rated_split(store, ALL, unit, by, top)) == expected


async def test_rated_split_by_day_is_request_stats_feedback(store: Store) -> None:
    condition = compile_filter({"request": {"model": {"not-equals": "gpt-4o"}}})
    stats = await request_stats(store, condition, ["day", "model"])
    expected = {
        (g["key"]["day"], g["key"]["model"], False, g["feedback"]["count"],
         g["feedback"]["positive"])
        for g in stats["groups"] if g["feedback"]["count"]
    }  # fmt: skip
    assert split_counts(await rated_split(store, condition, "day", "model")) == expected


async def test_rated_split_checks_its_input(store: Store) -> None:
    with pytest.raises(QueryError, match="bucket by hour, day"):
        await rated_split(store, ALL, "week")
    with pytest.raises(QueryError, match="cannot group by"):
        await rated_split(store, ALL, "day", "user_id; DROP TABLE feedback")
    with pytest.raises(QueryError, match="limit must be 1-100"):
        await rated_split(store, ALL, "day", "user", top=0)
