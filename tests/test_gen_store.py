"""bench/gen_store.py writes rows shaped as the proxy writes them: time-ordered ids and the
list's previews, so the dashboard bench reads a store like a real one."""

from __future__ import annotations

import uuid

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
