"""Both stores: migrations, upserts, and the SQLite pragmas."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import storage.sql as sql_store
from storage import Store, open_store
from storage.errors import StoreError
from storage.migrations import MIGRATIONS, Dialect, migration
from storage.models import ROW_COLUMNS, Row, utc_iso
from storage.postgres import split_url, to_numbered


async def describe(store: Store) -> list[tuple[Any, ...]]:
    """Tables, columns and indexes, in a form comparable between two stores of one backend."""
    if store.description.startswith("sqlite:"):
        rows = await store.fetch(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        )
        return sorted((r["type"], r["name"], r["sql"]) for r in rows)
    columns = await store.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default "
        "FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    indexes = await store.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
    )
    return sorted(tuple(r.values()) for r in columns) + sorted(
        (r["indexname"], r["indexdef"].split(" ON ", 1)[1].split(" USING ")[-1]) for r in indexes
    )


# Every migration that has shipped, in order. Stores in the field have these names recorded:
# append a new migration's name here, never change or remove one.
SHIPPED_MIGRATIONS = [
    "001_initial",
    "002_query_datasets",
    "003_gateway",
    "004_row_warnings",
    "005_model_is_requested",
    "006_previews",
    "007_rollups",
    "008_request_history",
    "009_score_values",
    "010_feedback_by_update",
    "011_property_times",
    "012_rated_rows",
]


def test_shipped_migrations_only_grow() -> None:
    names = [name for name, _ in MIGRATIONS]
    assert names[: len(SHIPPED_MIGRATIONS)] == SHIPPED_MIGRATIONS
    assert names == SHIPPED_MIGRATIONS, "add the new migration's name to SHIPPED_MIGRATIONS"
    assert [name for name, function in MIGRATIONS] == [
        function.__name__.removeprefix("m") for _, function in MIGRATIONS
    ]


def test_a_migration_is_named_and_numbered_in_order() -> None:
    def m099_out_of_order(d: Dialect) -> list[str]:
        return []

    def add_index(d: Dialect) -> list[str]:
        return []

    with pytest.raises(ValueError, match="is not number"):
        migration(m099_out_of_order)
    with pytest.raises(ValueError, match="must be named mNNN_name"):
        migration(add_index)
    assert [name for name, _ in MIGRATIONS] == SHIPPED_MIGRATIONS


async def test_blank_store_gets_every_migration_and_rerun_changes_nothing(store_url: str) -> None:
    store = open_store(store_url)
    assert await store.open() == [name for name, _ in MIGRATIONS]
    before = await describe(store)
    assert await store.migrate() == []
    await store.close()
    again = open_store(store_url)
    assert await again.open() == []
    assert await describe(again) == before
    await again.close()


@pytest.mark.parametrize("upto", range(len(MIGRATIONS)))
async def test_upgraded_old_store_matches_a_blank_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upto: int
) -> None:
    blank = open_store(str(tmp_path / "blank.db"))
    await blank.open()
    expected = await describe(blank)
    await blank.close()
    with monkeypatch.context() as patch:
        patch.setattr(sql_store, "MIGRATIONS", MIGRATIONS[:upto])
        old = open_store(str(tmp_path / "old.db"))
        await old.open()
        await old.close()
    upgraded = open_store(str(tmp_path / "old.db"))
    assert await upgraded.open() == [name for name, _ in MIGRATIONS[upto:]]
    assert await describe(upgraded) == expected
    await upgraded.close()


async def test_sqlite_pragmas_wal_and_busy_timeout(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "p.db"))
    await store.open()
    assert await store.fetch("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    assert (await store.fetch("PRAGMA busy_timeout"))[0]["timeout"] > 0
    await store.close()


async def test_write_batch_upserts_and_keeps_feedback(store_url: str) -> None:
    store = open_store(store_url)
    await store.open()
    first = Row(
        id="r1",
        created_at="2026-01-01T00:00:00.000Z",
        method="POST",
        path="/v1/x",
        properties={"a": "1", "b": "2"},
        status=200,
        latency_ms=1.5,
        total_tokens=10,
    )
    await store.write_batch([first])
    feedback = await store.upsert_feedback("r1", True, "good")
    assert feedback["rating"] is True
    await store.upsert_scores("r1", {"accuracy": 92.5, "helpful": 1})
    second = Row(
        id="r1",
        created_at="2026-01-01T00:00:01.000Z",
        method="POST",
        path="/v1/x",
        properties={"a": "3"},
        status=500,
        outcome="upstream_error",
    )
    await store.write_batch([second])
    got = await store.get_request("r1")
    assert got is not None
    assert (got["status"], got["outcome"], got["properties"]) == (500, "upstream_error", {"a": "3"})
    assert got["feedback"]["rating"] is True and got["feedback"]["comment"] == "good"
    assert got["scores"] == {"accuracy": 92.5, "helpful": 1.0}
    assert await store.fetch("SELECT key, value FROM request_properties") == [
        {"key": "a", "value": "3"}
    ]
    changed = await store.upsert_feedback("r1", False, None)
    assert changed["rating"] is False and changed["created_at"] == feedback["created_at"]
    assert await store.request_exists("r1") and not await store.request_exists("r2")
    await store.close()


async def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "nope" / "x.db"))
    with pytest.raises(StoreError, match="does not exist"):
        await store.open()


def test_placeholders_are_numbered_outside_quotes() -> None:
    assert to_numbered("a = ? AND b LIKE '?%' AND c IN (?, ?)") == (
        "a = $1 AND b LIKE '?%' AND c IN ($2, $3)"
    )


def test_schema_option_is_validated_and_removed_from_the_url() -> None:
    assert split_url("postgresql://h/db?schema=s1&sslmode=disable") == (
        "postgresql://h/db?sslmode=disable",
        "s1",
    )
    with pytest.raises(StoreError):
        split_url('postgresql://h/db?schema=x";drop')


async def test_unreachable_postgres_is_a_clear_error() -> None:
    store = open_store("postgresql://127.0.0.1:9/none")
    with pytest.raises(StoreError, match="cannot open"):
        await store.open()


def test_passwords_are_redacted_for_printing() -> None:
    from storage.models import redact

    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("./relaylog.db") == "./relaylog.db"


SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE (TABLE|INDEX))\b")


def test_sql_lives_only_in_storage() -> None:
    """proxy/ calls storage's named operations; ruff's S608 is ignored only under storage/."""
    root = Path(__file__).resolve().parent.parent
    found = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in sorted((root / "proxy").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SQL.search(line)
    ]
    assert found == []


async def test_model_becomes_the_requested_model_on_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [name for name, _ in MIGRATIONS]
    before = names.index("005_model_is_requested")
    with monkeypatch.context() as patch:
        patch.setattr(sql_store, "MIGRATIONS", MIGRATIONS[:before])
        old = open_store(str(tmp_path / "old.db"))
        await old.open()
        at, path = "2024-05-01T00:00:00.000Z", "/v1/x"
        # The columns a store at 004 has (the writer of today writes later ones too).
        await old.transact(
            [
                (
                    "INSERT INTO requests (id, created_at, method, path, outcome, "
                    "request_model, model, warnings) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [row_id, at, "POST", path, "ok", request_model, model, None],
                )
                for row_id, request_model, model in (
                    ("dated", "gpt-4o", "gpt-4o-2024-08-06"),
                    ("no-request-model", None, "whisper-1"),
                )
            ]
        )
        await old.close()
    upgraded = open_store(str(tmp_path / "old.db"))
    assert "005_model_is_requested" in await upgraded.open()
    rows = await upgraded.fetch("SELECT id, model FROM requests ORDER BY id")
    assert rows == [
        {"id": "dated", "model": "gpt-4o"},
        {"id": "no-request-model", "model": "whisper-1"},
    ]
    await upgraded.close()


def _reference_values(row: Row) -> tuple[Any, ...]:
    """Row encoding spelled out column by column: what row_values must return."""
    values: list[Any] = []
    for column in ROW_COLUMNS:
        value = getattr(row, column)
        if column == "properties":
            value = orjson.dumps(value).decode()
        elif column in ("is_stream", "cache_hit"):
            value = int(value)
        elif isinstance(value, str):
            value = value.replace("\x00", "\ufffd")
        values.append(value)
    return tuple(values)


@pytest.mark.parametrize("nul_in", [None, "id", "path", "request_body", "answer_preview"])
def test_row_values_encode_every_column_and_replace_nul(nul_in: str | None) -> None:
    row = Row(
        id="r1",
        created_at="2026-12-04T10:00:00.000Z",
        method="POST",
        path="/v1/chat/completions",
        model="gpt-4o-mini",
        status=200,
        is_stream=True,
        latency_ms=1.5,
        prompt_tokens=3,
        cost_usd=0.25,
        properties={"app": "a\x00b", "": ""},
        request_body='{"a": 1}',
        response_body="",
        cache_hit=True,
        prompt_preview="hello",
    )
    if nul_in is not None:
        setattr(row, nul_in, f"x\x00{getattr(row, nul_in)}\x00")
    values = sql_store.row_values(row)
    assert values == _reference_values(row)
    assert [type(v) for v in values] == [type(v) for v in _reference_values(row)]
    assert not any(isinstance(v, str) and "\x00" in v for v in values)
    assert values[ROW_COLUMNS.index("is_stream")] == 1
    assert orjson.loads(values[ROW_COLUMNS.index("properties")]) == row.properties


def test_row_values_of_a_text_column_holding_another_type_are_still_encoded() -> None:
    row = Row(id="r\x00", created_at="t", method="GET", path="/")
    row.error = 5  # type: ignore[assignment]
    assert sql_store.row_values(row) == _reference_values(row)
    assert sql_store.row_values(row)[0] == "r\ufffd"


@pytest.mark.parametrize(
    "ts",
    [
        0,
        0.0004999,
        0.9995,
        0.9999994,
        0.9999995,
        0.9999996,
        1.0000005,
        2.5e-6,
        1764842400.0,
        1764842400.1234565,
        1764842400.9999995,
        1764842459.9999999,
        1.5,
        -0.5,
        -1e-7,
        253402300799.25,
        *(k / 2**20 + 1764842400 for k in range(0, 2**20, 4099)),
    ],
)
def test_utc_iso_is_datetime_to_the_millisecond(ts: float) -> None:
    expected = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert utc_iso(ts) == expected
    assert utc_iso(ts) == expected  # the cached second gives the same text
