"""Named, ordered migrations, registered by @migration. Applied ones are never edited.

A migration is a function `mNNN_name(dialect) -> statements`, named `NNN_name` in the
relaylog_migrations table of every store it has run on: add a new one at the end with the
next number, and never rename, edit or remove a shipped one.
"""

from __future__ import annotations

import re
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

Migration = Callable[[Dialect], list[str]]
NAME = re.compile(r"m(\d{3})_[a-z0-9_]+")
_registered: list[tuple[str, Migration]] = []


def migration(function: Migration) -> Migration:
    """Register `function` as the next migration, named from it: m003_gateway is 003_gateway."""
    match = NAME.fullmatch(function.__name__)
    if match is None:
        raise ValueError(f"migration {function.__name__!r} must be named mNNN_name")
    if int(match.group(1)) != len(_registered) + 1:
        raise ValueError(f"migration {function.__name__!r} is not number {len(_registered) + 1}")
    _registered.append((function.__name__.removeprefix("m"), function))
    return function


@migration
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


# Latency histogram buckets 10% wide, 1 ms to ~11 minutes: bucket i holds latencies in
# [1.1**(i-1), 1.1**i), bucket 0 those under 1 ms. A balanced CASE tree tests 8 bounds per row.
LATENCY_BOUNDS = tuple(f"{1.1**i:.3f}" for i in range(143))


def _bucket_case(low: int, high: int) -> str:
    """The bucket of latency_ms among LATENCY_BOUNDS[low:high], by binary search."""
    if low == high:
        return str(low)
    middle = (low + high) // 2
    return (
        f"CASE WHEN latency_ms < {LATENCY_BOUNDS[middle]} "
        f"THEN {_bucket_case(low, middle)} ELSE {_bucket_case(middle + 1, high)} END"
    )


# The stats queries group by this exact expression (-1: no latency) so SQLite reads it from
# the requests_daily index in order; it is part of migration 002 and must never change.
LATENCY_BUCKET_SQL = (
    f"CASE WHEN latency_ms IS NULL THEN -1 ELSE {_bucket_case(0, len(LATENCY_BOUNDS) - 1)} END"
)


@migration
def m002_query_datasets(d: Dialect) -> list[str]:
    """Indexes for filtered pages, stats and feedback joins; datasets of request ids."""
    statements = [
        "DROP INDEX requests_created_at",
        "CREATE INDEX requests_created_id ON requests (created_at, id)",
        # Feedback and scores join to their request's day and model without reading the row.
        "CREATE INDEX requests_id_day_model ON requests (id, created_at, model)",
        """CREATE TABLE datasets (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE dataset_rows (
            dataset_id TEXT NOT NULL,
            request_id TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (dataset_id, request_id)
        )""",
        "CREATE INDEX dataset_rows_request ON dataset_rows (request_id, dataset_id)",
    ]
    if d.name == "sqlite":
        # Covers the stats scan grouped by day, model and latency bucket, in index order, so
        # SQLite aggregates without sorting. PostgreSQL hash-aggregates instead (and cannot
        # store an index expression this large).
        statements.append(
            f"""CREATE INDEX requests_daily ON requests (
                substr(created_at, 1, 10), model, {LATENCY_BUCKET_SQL}, latency_ms, created_at,
                outcome, prompt_tokens, completion_tokens, cost_usd
            )"""
        )
    return statements


@migration
def m003_gateway(d: Dialect) -> list[str]:
    """Cache entries, rate-limit events, and the row columns for hits, retries and fallbacks."""
    columns = [
        "cache_hit INTEGER NOT NULL DEFAULT 0",
        "cache_source_id TEXT",
        f"saved_cost_usd {d.real}",
        f"saved_prompt_tokens {d.bigint}",
        f"saved_completion_tokens {d.bigint}",
        "attempts INTEGER",
        "attempt_log TEXT",
        "fallback_index INTEGER",
        "upstream_target TEXT",
    ]
    return [
        *(f"ALTER TABLE requests ADD COLUMN {column}" for column in columns),
        f"""CREATE TABLE cache_entries (
            key TEXT NOT NULL,
            bucket INTEGER NOT NULL,
            created_at {d.real} NOT NULL,
            expires_at {d.real} NOT NULL,
            size {d.bigint} NOT NULL,
            status INTEGER NOT NULL,
            content_type TEXT NOT NULL,
            is_stream INTEGER NOT NULL,
            body TEXT NOT NULL,
            source_request_id TEXT,
            model TEXT,
            path TEXT NOT NULL,
            seed TEXT NOT NULL,
            PRIMARY KEY (key, bucket)
        )""",
        "CREATE INDEX cache_entries_created ON cache_entries (created_at)",
        "CREATE INDEX cache_entries_expires ON cache_entries (expires_at)",
        f"""CREATE TABLE ratelimit_events (
            key TEXT NOT NULL,
            at {d.real} NOT NULL,
            amount {d.real} NOT NULL
        )""",
        "CREATE INDEX ratelimit_events_key_at ON ratelimit_events (key, at)",
    ]


@migration
def m004_row_warnings(d: Dialect) -> list[str]:
    """What was wrong with a call's logging headers (a JSON list), kept on its row."""
    return ["ALTER TABLE requests ADD COLUMN warnings TEXT"]


@migration
def m005_model_is_requested(d: Dialect) -> list[str]:
    """`model` is the model the caller asked for; rows logged before held the response model."""
    return [
        "UPDATE requests SET model = request_model "
        "WHERE request_model IS NOT NULL AND (model IS NULL OR model <> request_model)"
    ]


@migration
def m006_previews(d: Dialect) -> list[str]:
    """The first words of each prompt and answer, so a list never reads the bodies."""
    return [
        "ALTER TABLE requests ADD COLUMN prompt_preview TEXT",
        "ALTER TABLE requests ADD COLUMN answer_preview TEXT",
    ]


def bucket_sql(column: str) -> str:
    """LATENCY_BUCKET_SQL over another column (ttft_ms): the same buckets and bounds."""
    return LATENCY_BUCKET_SQL.replace("latency_ms", column)


# A row's model as a key column: '' for none, '=' and the name otherwise (NULL cannot be a
# primary key part, and '' must stay apart from no model). storage.rollups.model_key mirrors it.
MODEL_KEY_SQL = "CASE WHEN model IS NULL THEN '' ELSE '=' || model END"
ROLLUP_KEY = "hour TEXT NOT NULL, model_key TEXT NOT NULL, model TEXT, outcome TEXT NOT NULL"
HISTOGRAM = "metric TEXT NOT NULL, bucket INTEGER NOT NULL, count {bigint} NOT NULL, total {real}"


def _histogram_backfill(table: str, period: str, metric: str, column: str) -> str:
    return (
        f"INSERT INTO {table} (period, model_key, model, outcome, metric, bucket, count, total) "
        f"SELECT {period}, {MODEL_KEY_SQL}, model, outcome, '{metric}', {bucket_sql(column)}, "
        f"COUNT(*), SUM({column}) FROM requests WHERE {column} IS NOT NULL "
        f"GROUP BY {period}, model, outcome, {bucket_sql(column)}"
    )


@migration
def m007_rollups(d: Dialect) -> list[str]:
    """Aggregates the writer keeps per hour x model x outcome, per user and per session.

    Filled here from the rows already logged; storage.rollups keeps them in step with every
    write, feedback and score from then on (deletes by retention leave them as they are).
    """
    histogram = HISTOGRAM.format(bigint=d.bigint, real=d.real)
    statements = [
        f"""CREATE TABLE rollup_hours (
            {ROLLUP_KEY},
            requests {d.bigint} NOT NULL,
            latency_count {d.bigint} NOT NULL,
            latency_sum {d.real},
            ttft_count {d.bigint} NOT NULL,
            ttft_sum {d.real},
            prompt_tokens {d.bigint},
            completion_tokens {d.bigint},
            total_tokens {d.bigint},
            cost_usd {d.real},
            cache_hits {d.bigint} NOT NULL,
            rated {d.bigint} NOT NULL,
            positive {d.bigint} NOT NULL,
            PRIMARY KEY (hour, model_key, outcome)
        )""",
        f"""CREATE TABLE rollup_hour_histogram (
            period TEXT NOT NULL, model_key TEXT NOT NULL, model TEXT, outcome TEXT NOT NULL,
            {histogram},
            PRIMARY KEY (period, model_key, outcome, metric, bucket)
        )""",
        f"""CREATE TABLE rollup_day_histogram (
            period TEXT NOT NULL, model_key TEXT NOT NULL, model TEXT, outcome TEXT NOT NULL,
            {histogram},
            PRIMARY KEY (period, model_key, outcome, metric, bucket)
        )""",
        f"""CREATE TABLE rollup_scores (
            {ROLLUP_KEY},
            name TEXT NOT NULL,
            count {d.bigint} NOT NULL,
            total {d.real},
            low {d.real},
            high {d.real},
            PRIMARY KEY (hour, model_key, outcome, name)
        )""",
        f"""CREATE TABLE rollup_users (
            user_id TEXT PRIMARY KEY,
            requests {d.bigint} NOT NULL,
            prompt_tokens {d.bigint},
            completion_tokens {d.bigint},
            total_tokens {d.bigint},
            cost_usd {d.real},
            first_at TEXT,
            last_at TEXT,
            rated {d.bigint} NOT NULL,
            positive {d.bigint} NOT NULL
        )""",
        f"""CREATE TABLE rollup_sessions (
            session_id TEXT PRIMARY KEY,
            name TEXT,
            first_at TEXT,
            last_at TEXT,
            requests {d.bigint} NOT NULL,
            prompt_tokens {d.bigint},
            completion_tokens {d.bigint},
            total_tokens {d.bigint},
            cost_usd {d.real}
        )""",
        "CREATE INDEX rollup_sessions_last ON rollup_sessions (last_at, session_id)",
        "INSERT INTO rollup_hours (hour, model_key, model, outcome, requests, latency_count, "
        "latency_sum, ttft_count, ttft_sum, prompt_tokens, completion_tokens, total_tokens, "
        "cost_usd, cache_hits, rated, positive) "
        f"SELECT substr(r.created_at, 1, 13), {MODEL_KEY_SQL}, model, outcome, COUNT(*), "
        "COUNT(latency_ms), SUM(latency_ms), COUNT(ttft_ms), SUM(ttft_ms), SUM(prompt_tokens), "
        "SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd), "
        "SUM(CASE WHEN cache_hit = 1 THEN 1 ELSE 0 END), COUNT(f.rating), "
        "COALESCE(SUM(f.rating), 0) FROM requests r LEFT JOIN feedback f ON f.request_id = r.id "
        "GROUP BY substr(r.created_at, 1, 13), model, outcome",
        "INSERT INTO rollup_scores (hour, model_key, model, outcome, name, count, total, low, "
        f"high) SELECT substr(r.created_at, 1, 13), {MODEL_KEY_SQL}, model, outcome, s.name, "
        "COUNT(*), SUM(s.value), MIN(s.value), MAX(s.value) "
        "FROM scores s JOIN requests r ON r.id = s.request_id "
        "GROUP BY substr(r.created_at, 1, 13), model, outcome, s.name",
        "INSERT INTO rollup_users (user_id, requests, prompt_tokens, completion_tokens, "
        "total_tokens, cost_usd, first_at, last_at, rated, positive) "
        "SELECT user_id, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
        "SUM(total_tokens), SUM(cost_usd), MIN(r.created_at), MAX(r.created_at), "
        "COUNT(f.rating), COALESCE(SUM(f.rating), 0) "
        "FROM requests r LEFT JOIN feedback f ON f.request_id = r.id "
        "WHERE user_id IS NOT NULL GROUP BY user_id",
        "INSERT INTO rollup_sessions (session_id, name, first_at, last_at, requests, "
        "prompt_tokens, completion_tokens, total_tokens, cost_usd) "
        "SELECT session_id, MAX(session_name), MIN(created_at), MAX(created_at), COUNT(*), "
        "SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), SUM(cost_usd) "
        "FROM requests WHERE session_id IS NOT NULL GROUP BY session_id",
    ]
    for table, period in (
        ("rollup_hour_histogram", "substr(created_at, 1, 13)"),
        ("rollup_day_histogram", "substr(created_at, 1, 10)"),
    ):
        for metric, column in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
            statements.append(_histogram_backfill(table, period, metric, column))
    return statements


@migration
def m008_request_history(d: Dialect) -> list[str]:
    """Earlier exchanges of a reused request id, with the feedback, scores and datasets they had."""
    return [
        "ALTER TABLE requests ADD COLUMN request_hash TEXT",
        """CREATE TABLE request_history (
            request_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            replaced_at TEXT NOT NULL,
            record TEXT NOT NULL,
            PRIMARY KEY (request_id, seq)
        )""",
    ]


SCORE_VALUES = (
    "period TEXT NOT NULL, model_key TEXT NOT NULL, model TEXT, outcome TEXT NOT NULL, "
    "name TEXT NOT NULL, value {real} NOT NULL, count {bigint} NOT NULL, "
    "PRIMARY KEY (period, model_key, outcome, name, value)"
)


@migration
def m009_score_values(d: Dialect) -> list[str]:
    """How many scores of each name had each value, per hour (and per day) x model x outcome,
    so the analytics page's score histograms read the rollups instead of every score.

    Filled here from the scores already stored; storage.rollups keeps them in step with
    every score, replaced row and retention (which leaves them as they are) from then on.
    """
    columns = SCORE_VALUES.format(real=d.real, bigint=d.bigint)
    statements = []
    for table, period in (
        ("rollup_hour_score_values", "substr(r.created_at, 1, 13)"),
        ("rollup_day_score_values", "substr(r.created_at, 1, 10)"),
    ):
        statements += [
            f"CREATE TABLE {table} ({columns})",
            f"INSERT INTO {table} (period, model_key, model, outcome, name, value, count) "
            f"SELECT {period}, {MODEL_KEY_SQL}, model, outcome, s.name, s.value, COUNT(*) "
            "FROM scores s JOIN requests r ON r.id = s.request_id "
            f"GROUP BY {period}, model, outcome, s.name, s.value",
        ]
    return statements


@migration
def m010_feedback_by_update(d: Dialect) -> list[str]:
    """Ratings in the order they were last given, so the analytics page's latest negative
    feedback walks the newest few instead of sorting every thumbs-down."""
    return ["CREATE INDEX feedback_rating_updated ON feedback (rating, updated_at, request_id)"]


@migration
def m011_property_times(d: Dialect) -> list[str]:
    """Each property row carries its request's created_at, so the top values of a property
    over a time range, and the rated requests of a property value over one, come from the
    property rows' own indexes instead of joining every request in the range.

    Filled here from the requests; the writer, a property set later and a replaced row keep
    it from then on (a property row is deleted with its request).
    """
    if d.name == "postgres":
        backfill = (
            "UPDATE request_properties p SET created_at = r.created_at "
            "FROM requests r WHERE r.id = p.request_id"
        )
    else:
        # Read from requests_id_day_model, which holds each id's created_at.
        backfill = (
            "UPDATE request_properties SET created_at = (SELECT r.created_at FROM requests r "
            "WHERE r.id = request_properties.request_id)"
        )
    return [
        "ALTER TABLE request_properties ADD COLUMN created_at TEXT",
        backfill,
        # (key, value) with the time after it: a value's rows over a range are one range of
        # it. Both indexes are new, so SQLite weighs them alike on a store ANALYZE had
        # measured (stale statistics of the old one made it pick the other for no range).
        "DROP INDEX request_properties_key_value",
        "CREATE INDEX request_properties_key_value_created "
        "ON request_properties (key, value, created_at)",
        "CREATE INDEX request_properties_key_created "
        "ON request_properties (key, created_at, value)",
    ]


@migration
def m012_rated_rows(d: Dialect) -> list[str]:
    """The rated requests in narrow rows, so the analytics page's ratings split by user or by
    a property, and comparisons of users or property values, read them instead of every
    rating's wide request row.

    rollup_rated holds one row per rated request, its id, time, model, outcome and user
    under the requests' own column names (a filter over those runs unchanged on it) and its
    rating; each property row gains its request's rating (NULL: not rated). Filled here from
    the feedback of logged requests; the writer (a row written or replaced), every rating
    and a property set later keep them from then on, and retention deletes them with their
    request.
    """
    if d.name == "postgres":
        backfill = (
            "UPDATE request_properties p SET rating = f.rating FROM feedback f "
            "WHERE f.request_id = p.request_id"
        )
    else:
        backfill = (
            "UPDATE request_properties SET rating = (SELECT f.rating FROM feedback f "
            "WHERE f.request_id = request_properties.request_id) "
            "WHERE request_id IN (SELECT request_id FROM feedback)"
        )
    return [
        """CREATE TABLE rollup_rated (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            model TEXT,
            outcome TEXT NOT NULL,
            user_id TEXT,
            rating INTEGER NOT NULL
        )""",
        "INSERT INTO rollup_rated (id, created_at, model, outcome, user_id, rating) "
        "SELECT r.id, r.created_at, r.model, r.outcome, r.user_id, f.rating "
        "FROM feedback f JOIN requests r ON r.id = f.request_id",
        "CREATE INDEX rollup_rated_created ON rollup_rated (created_at)",
        "ALTER TABLE request_properties ADD COLUMN rating INTEGER",
        backfill,
        # The rated property rows alone, rating included: a value's over a time range (the
        # rated counts of a comparison), and a key's by time (ratings split by a property).
        "CREATE INDEX request_properties_rated_value ON request_properties "
        "(key, value, created_at, rating) WHERE rating IS NOT NULL",
        "CREATE INDEX request_properties_rated_created ON request_properties "
        "(key, created_at, value, rating) WHERE rating IS NOT NULL",
    ]


# Every migration in order, as (name, function).
MIGRATIONS: tuple[tuple[str, Migration], ...] = tuple(_registered)

MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS relaylog_migrations (
    name TEXT PRIMARY KEY,
    applied_at TEXT NOT NULL
)"""
