"""Named, ordered migrations. Applied ones are never edited: add a new one instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """Type names that differ between SQLite and PostgreSQL."""

    name: str
    real: str
    bigint: str


SQLITE = Dialect(name="sqlite", real="REAL", bigint="INTEGER")
POSTGRES = Dialect(name="postgres", real="DOUBLE PRECISION", bigint="BIGINT")


def m001_initial(d: Dialect) -> list[str]:
    return [
        f"""CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            method TEXT NOT NULL,
            path TEXT NOT NULL,
            query TEXT,
            request_model TEXT,
            response_model TEXT,
            model TEXT,
            status INTEGER,
            outcome TEXT NOT NULL,
            is_stream INTEGER NOT NULL DEFAULT 0,
            latency_ms {d.real},
            ttft_ms {d.real},
            prompt_tokens {d.bigint},
            completion_tokens {d.bigint},
            total_tokens {d.bigint},
            cached_tokens {d.bigint},
            cost_usd {d.real},
            finish_reason TEXT,
            user_id TEXT,
            session_id TEXT,
            session_path TEXT,
            session_name TEXT,
            properties TEXT NOT NULL DEFAULT '{{}}',
            request_body TEXT,
            response_body TEXT,
            request_bytes {d.bigint},
            response_bytes {d.bigint},
            request_headers TEXT,
            upstream_request_id TEXT,
            error TEXT
        )""",
        "CREATE INDEX requests_created_at ON requests (created_at)",
        "CREATE INDEX requests_model_created ON requests (model, created_at)",
        "CREATE INDEX requests_user_created ON requests (user_id, created_at)",
        "CREATE INDEX requests_session ON requests (session_id, created_at)",
        """CREATE TABLE request_properties (
            request_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (request_id, key)
        )""",
        "CREATE INDEX request_properties_key_value ON request_properties (key, value)",
        """CREATE TABLE feedback (
            request_id TEXT PRIMARY KEY,
            rating INTEGER NOT NULL,
            comment TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX feedback_rating ON feedback (rating, request_id)",
        """CREATE TABLE session_feedback (
            session_id TEXT PRIMARY KEY,
            rating INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        f"""CREATE TABLE scores (
            request_id TEXT NOT NULL,
            name TEXT NOT NULL,
            value {d.real} NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (request_id, name)
        )""",
        "CREATE INDEX scores_name_value ON scores (name, value)",
    ]


MIGRATIONS: tuple[tuple[str, Callable[[Dialect], list[str]]], ...] = (
    ("001_initial", m001_initial),
)

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS relaylog_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)"""
