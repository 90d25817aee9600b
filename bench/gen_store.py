"""Fill a SQLite store with realistic logged rows for the query benchmark.

    python bench/gen_store.py --rows 1000000 --db /tmp/relaylog-1m.db

Rows span `--days` days up to now, in time order (as the proxy writes them), with a model mix,
streamed and failed calls, users, sessions, 2-4 properties each (carrying their request's time
and rating, as the writer stores them since migrations 011 and 012), request and response
bodies, and a fraction with feedback (`--feedback`, each also a row of rollup_rated) and scores
(`--scores`). Costs come from the price table. The same `--seed` gives the same store. Rows go
in with plain INSERTs, so the rollups are then filled from them by the statements migrations
007 and 009 fill an upgraded store with: the same aggregates the writer keeps.
`--rollups-only` fills them again in an existing store.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.gateway.previews import answer_preview, prompt_preview
from proxy.gateway.pricing import PriceTable
from proxy.gateway.sse import Summary
from storage.migrations import SQLITE, m007_rollups, m009_score_values
from storage.models import ROW_COLUMNS, Row, utc_iso
from storage.rollups import RATED_COLUMNS, UPSERT_RATED
from storage.sqlite import SQLiteStore

MODELS = (
    ("gpt-4o-mini", 40),
    ("gpt-4.1-mini", 18),
    ("gpt-4o", 12),
    ("gpt-5-mini", 10),
    ("o4-mini", 5),
    ("my-local-llama", 3),
    ("text-embedding-3-small", 12),
)
APPS = ("chat", "search", "support", "summarize")
TOPICS = ("billing", "refunds", "shipping", "passwords", "pricing", "latency", "exports")
STATUSES = ((200, "ok", 970), (429, "upstream_error", 15), (500, "upstream_error", 8))
BATCH = 5000
ROLLUP_TABLES = (
    "rollup_hours",
    "rollup_hour_histogram",
    "rollup_day_histogram",
    "rollup_scores",
    "rollup_users",
    "rollup_sessions",
    "rollup_hour_score_values",
    "rollup_day_score_values",
)
# Columns the generator leaves out (cache, retries, warnings) get the Row's defaults.
DEFAULTS = {
    name: field.default if isinstance(field.default, bool | int | float | str | None) else None
    for name, field in Row.__dataclass_fields__.items()
}


def _pick(rng: random.Random, weighted: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


Body = dict[str, Any]


def _time_ordered_id(created: float, rng: random.Random) -> str:
    """A version-7 UUID for `created` as the proxy draws them (headers.new_request_id), with
    the random bits from `rng` so a seed gives the same store."""
    h = f"{int(created * 1000):012x}{rng.getrandbits(80):020x}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _bodies(rng: random.Random, model: str, path: str, i: int) -> tuple[Body, Body, int, int]:
    topic = rng.choice(TOPICS)
    question = f"Customer #{i % 9973} asks about {topic}: " + " ".join(
        rng.choice(("please", "help", "order", "account", "why", "today", "again", "thanks"))
        for _ in range(rng.randint(8, 40))
    )
    if path == "/v1/embeddings":
        request: Body = {"model": model, "input": question}
        prompt = len(question) // 4
        response: Body = {
            "object": "list",
            "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": "<omitted>"}],
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return request, response, prompt, 0
    request = {
        "model": model,
        "messages": [
            {"role": "system", "content": f"You are the {topic} assistant. Be brief and kind."},
            {"role": "user", "content": question},
        ],
        "temperature": 0.2,
    }
    answer = f"Here is how {topic} works for you. " * rng.randint(1, 6)
    prompt = int(rng.lognormvariate(5.5, 0.8)) + 20
    completion = len(answer) // 4
    response = {
        "id": f"chatcmpl-{i}",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return request, response, prompt, completion


def generate(rows: int, days: int, seed: int) -> Iterator[tuple[tuple[Any, ...], dict[str, str]]]:
    """Yield (row values in ROW_COLUMNS order, properties) in created_at order."""
    rng = random.Random(seed)
    prices = PriceTable.load()
    end = time.time()
    start = end - days * 86400
    step = (end - start) / rows
    headers = orjson.dumps({"content-type": "application/json", "user-agent": "OpenAI/Python 1.x"})
    for i in range(rows):
        created = start + i * step + rng.random() * step
        model = _pick(rng, MODELS)
        path = "/v1/embeddings" if model.startswith("text-embedding") else "/v1/chat/completions"
        status, outcome = 200, "ok"
        roll = rng.randrange(1000)
        for code, kind, weight in STATUSES:
            if roll < weight:
                status, outcome = code, kind
                break
            roll -= weight
        stream = path == "/v1/chat/completions" and rng.random() < 0.4
        latency = rng.lognormvariate(math.log(700 if path != "/v1/embeddings" else 90), 0.6)
        request, response, prompt, completion = _bodies(rng, model, path, i)
        request_body, response_body = (
            orjson.dumps(request).decode(),
            orjson.dumps(response).decode(),
        )
        cached = (prompt // 2) if prompt > 1024 and rng.random() < 0.3 else 0
        ok = outcome == "ok"
        summary = Summary(prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached)
        properties = {"app": rng.choice(APPS), "environment": "production"}
        if rng.random() < 0.8:
            properties["prompt_version"] = f"v{min(8, int(rng.expovariate(0.4)) + 1)}"
        if rng.random() < 0.5:
            properties["customer"] = f"cust-{rng.randrange(500)}"
        values = {
            "id": _time_ordered_id(created, rng),
            "created_at": utc_iso(created),
            "method": "POST",
            "path": path,
            "query": None,
            "request_model": model,
            "response_model": model if ok else None,
            "model": model,
            "status": status,
            "outcome": outcome,
            "is_stream": int(stream),
            "latency_ms": round(latency, 2),
            "ttft_ms": round(latency * rng.uniform(0.1, 0.4), 2) if stream else None,
            "prompt_tokens": prompt if ok else None,
            "completion_tokens": completion if ok and path != "/v1/embeddings" else None,
            "total_tokens": prompt + completion if ok else None,
            "cached_tokens": cached if ok else None,
            "cost_usd": prices(model, summary) if ok else None,
            "finish_reason": "stop" if ok and path != "/v1/embeddings" else None,
            "user_id": f"user-{rng.randrange(20000)}" if rng.random() < 0.9 else None,
            "session_id": f"sess-{i // 7}" if rng.random() < 0.3 else None,
            "session_path": None,
            "session_name": None,
            "properties": orjson.dumps(properties).decode(),
            "request_body": request_body,
            "response_body": response_body if ok else '{"error": {"message": "rate limited"}}',
            "request_bytes": len(request_body),
            "response_bytes": len(response_body),
            "request_headers": headers.decode(),
            "upstream_request_id": f"req_{i}",
            "error": None if ok else f"upstream answered {status}",
            "prompt_preview": prompt_preview(request),
            "answer_preview": answer_preview(response) if ok else None,
        }
        yield tuple(values.get(c, DEFAULTS[c]) for c in ROW_COLUMNS), properties


def fill(db: Path, rows: int, days: int, seed: int, feedback: float, scores: float) -> None:
    asyncio.run(_migrate(db))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(seed + 1)
    insert_row = (
        f"INSERT INTO requests ({', '.join(ROW_COLUMNS)}) "
        f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
    )
    batch: list[tuple[Any, ...]] = []
    props: list[tuple[str, str, str, str, int | None]] = []
    rated: list[tuple[Any, ...]] = []
    rated_rows: list[tuple[Any, ...]] = []
    scored: list[tuple[Any, ...]] = []
    started = time.perf_counter()

    def flush() -> None:
        conn.execute("BEGIN")
        conn.executemany(insert_row, batch)
        conn.executemany(
            "INSERT INTO request_properties (request_id, key, value, created_at, rating) "
            "VALUES (?, ?, ?, ?, ?)",
            props,
        )
        conn.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", rated)
        conn.executemany(UPSERT_RATED, rated_rows)
        conn.executemany("INSERT INTO scores VALUES (?, ?, ?, ?, ?)", scored)
        conn.execute("COMMIT")
        for pending in (batch, props, rated, rated_rows, scored):
            pending.clear()

    for n, (values, properties) in enumerate(generate(rows, days, seed), 1):
        request_id, created_at = values[0], values[1]
        batch.append(values)
        rating = None
        if rng.random() < feedback:
            comment = "great answer" if rng.random() < 0.1 else None
            rating = int(rng.random() < 0.7)
            rated.append((request_id, rating, comment, created_at, created_at))
            row = dict(zip(ROW_COLUMNS, values, strict=True))
            rated_rows.append((*(row[c] for c in RATED_COLUMNS), rating))
        props.extend((request_id, k, v, created_at, rating) for k, v in properties.items())
        if rng.random() < scores:
            accuracy = float(min(100, max(0, round(rng.gauss(80, 12)))))
            scored.append((request_id, "accuracy", accuracy, created_at, created_at))
            scored.append(
                (request_id, "helpful", float(rng.random() < 0.75), created_at, created_at)
            )
        if len(batch) >= BATCH:
            flush()
            rate = n / (time.perf_counter() - started)
            print(f"\r{n:>10,} rows  {rate:,.0f} rows/s", end="", file=sys.stderr, flush=True)
    flush()
    sessions = conn.execute(
        "SELECT DISTINCT session_id FROM requests WHERE session_id IS NOT NULL"
    ).fetchall()
    now = utc_iso(time.time())
    conn.executemany(
        "INSERT INTO session_feedback VALUES (?, ?, ?, ?)",
        [(s[0], int(rng.random() < 0.6), now, now) for s in sessions if rng.random() < 0.1],
    )
    fill_rollups(conn)
    conn.close()
    print(f"\nwrote {rows:,} rows to {db} in {time.perf_counter() - started:.0f}s", file=sys.stderr)


def fill_rollups(conn: sqlite3.Connection) -> None:
    """Empty the rollup tables and fill them from the rows, as migrations 007 and 009 do."""
    started = time.perf_counter()
    conn.execute("BEGIN")
    for table in ROLLUP_TABLES:
        conn.execute(f"DELETE FROM {table}")
    for statement in [*m007_rollups(SQLITE), *m009_score_values(SQLITE)]:
        if statement.startswith("INSERT"):
            conn.execute(statement)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    print(f"filled the rollups in {time.perf_counter() - started:.0f}s", file=sys.stderr)


async def _migrate(db: Path) -> None:
    store = SQLiteStore(str(db))
    await store.open()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="/tmp/relaylog-bench.db", help="SQLite file to create")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="time span of the rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--feedback", type=float, default=0.08, help="fraction of rows rated")
    parser.add_argument("--scores", type=float, default=0.05, help="fraction of rows scored")
    parser.add_argument(
        "--rollups-only", action="store_true", help="only fill the rollups of an existing --db"
    )
    args = parser.parse_args()
    db = Path(args.db)
    if args.rollups_only:
        if not db.exists():
            parser.error(f"{db} does not exist")
        asyncio.run(_migrate(db))
        conn = sqlite3.connect(db, isolation_level=None)
        fill_rollups(conn)
        conn.close()
        return
    if db.exists():
        parser.error(f"{db} exists; remove it or choose another --db")
    fill(db, args.rows, args.days, args.seed, args.feedback, args.scores)


if __name__ == "__main__":
    main()
