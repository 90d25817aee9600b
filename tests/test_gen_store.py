"""bench/gen_store.py writes rows shaped as the proxy writes them: time-ordered ids and the
list's previews, so the dashboard bench reads a store like a real one."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from bench import gen_store
from storage.models import ROW_COLUMNS


def test_generated_rows_have_time_ordered_ids_and_previews() -> None:
    rows = [dict(zip(ROW_COLUMNS, values, strict=True)) for values, _ in
            gen_store.generate(400, days=3, seed=7)]  # fmt: skip
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 for i in ids)
    # Rows come in created_at order and their ids sort the same way (to the millisecond).
    assert [r["created_at"] for r in rows] == sorted(r["created_at"] for r in rows)
    assert ids == sorted(ids)
    chats = [r for r in rows if r["path"] == "/v1/chat/completions"]
    assert chats and all(r["prompt_preview"].startswith("Customer #") for r in chats)
    answered = [r for r in chats if r["outcome"] == "ok"]
    assert answered and all(r["answer_preview"].startswith("Here is how") for r in answered)
    assert all(r["answer_preview"] is None for r in chats if r["outcome"] != "ok")


def test_the_same_seed_gives_the_same_rows() -> None:
    """Times are counted back from now; everything else, the ids' random bits included, comes
    from the seed."""
    moving = {ROW_COLUMNS.index("id"), ROW_COLUMNS.index("created_at")}

    def rows() -> list[tuple[object, ...]]:
        return [
            (values[0][-12:], *(v for n, v in enumerate(values) if n not in moving))
            for values, _ in gen_store.generate(50, days=1, seed=3)
        ]

    assert rows() == rows()


def test_property_rows_carry_their_request_time_and_rating(tmp_path: Path) -> None:
    """As the writer stores them (migrations 011 and 012), so the bench reads a store like a
    real one."""
    db = tmp_path / "gen.db"
    gen_store.fill(db, 300, days=2, seed=5, feedback=0.1, scores=0.05)
    conn = sqlite3.connect(db)
    mismatched = conn.execute(
        "SELECT COUNT(*) FROM request_properties p LEFT JOIN requests r ON r.id = p.request_id "
        "WHERE p.created_at IS NOT r.created_at"
    ).fetchone()[0]
    properties = conn.execute("SELECT COUNT(*) FROM request_properties").fetchone()[0]
    # And the rated rows of migration 012: one per rating, the rating on each property row.
    rated = conn.execute(
        "SELECT id, created_at, model, outcome, user_id, rating FROM rollup_rated ORDER BY id"
    ).fetchall()
    from_feedback = conn.execute(
        "SELECT r.id, r.created_at, r.model, r.outcome, r.user_id, f.rating "
        "FROM feedback f JOIN requests r ON r.id = f.request_id ORDER BY r.id"
    ).fetchall()
    unrated = conn.execute(
        "SELECT COUNT(*) FROM request_properties p LEFT JOIN feedback f "
        "ON f.request_id = p.request_id WHERE p.rating IS NOT f.rating"
    ).fetchone()[0]
    conn.close()
    assert properties >= 600
    assert mismatched == 0
    assert len(rated) >= 10
    assert rated == from_feedback
    assert unrated == 0
