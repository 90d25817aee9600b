"""The management API's route table: every route, its handler, body, keys, CORS and answers.

create_app() mounts ROUTES once, in this order, before the forward catch-all: a fixed path
such as `/v1/request/query` comes before `/v1/request/{id}`, which would otherwise take
`query` as an id. `{id:[^/]+}` rather than aiohttp's default `[^{}/]+`, so an id with a
brace reaches its handler and gets a 400 instead of falling through to the upstream.
proxy/api/openapi.py makes the OpenAPI document from this table.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from proxy.api import cache, datasets, export, feedback, health, openapi, requests
from proxy.api.http import Param, Route
from proxy.api.models import (
    MAX_BATCH_ITEMS,
    BatchBody,
    BatchResult,
    CountBody,
    DatasetCreateBody,
    DatasetListBody,
    DatasetMutateBody,
    DatasetRefParam,
    Feedback,
    FeedbackBody,
    Health,
    LegacyFeedbackBody,
    LoggedRequest,
    PropertyBody,
    QueryBody,
    Ready,
    RequestIdParam,
    Scores,
    ScoresBody,
    SessionFeedback,
    SessionFeedbackBody,
    SessionIdParam,
    StatsBody,
)
from proxy.metrics import metrics

READ_ERRORS = (400, 401, 503)
WRITE_ERRORS = (400, 401, 404, 413, 503)
REQUEST_ID = (Param("id", "path", RequestIdParam),)
DATASET = (Param("id", "path", DatasetRefParam),)

ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/healthz", health.healthz, "healthz", "Liveness: the process answers.",
        keys="open", answer="Alive.", data=Health,
    ),
    Route(
        "GET", "/readyz", health.readyz, "readyz",
        "Readiness: the store answers; queue depth and drops so far.",
        keys="open", answer="Ready.", data=Ready, errors=(503,),
    ),
    Route(
        "GET", "/metrics", metrics, "metrics",
        "Prometheus metrics: requests, latency, feedback calls, log queue.",
        keys="open", answer="Prometheus text format.",
        content={"text/plain": {"schema": {"type": "string"}}},
    ),
    Route(
        "GET", "/openapi.json", openapi.openapi, "openapi", "This document.",
        keys="open", answer="OpenAPI 3.1.",
        content={"application/json": {"schema": {"type": "object"}}},
    ),
    Route(
        "POST", "/v1/request/query", requests.request_query, "request_query",
        "Logged requests matching a filter tree, a page at a time.", QueryBody,
        answer="Rows in Helicone's shape.", data={"type": "array"}, errors=READ_ERRORS,
    ),
    Route(
        "POST", "/v1/request/count/query", requests.request_count, "request_count",
        "How many logged requests match a filter tree (Helicone's count).", CountBody,
        answer="The count.", data={"type": "integer"}, errors=READ_ERRORS,
    ),
    Route(
        "POST", "/v1/request/stats", requests.stats, "request_stats",
        "Totals and latency percentiles, optionally grouped.", StatsBody,
        answer="Aggregates.", errors=READ_ERRORS,
    ),
    Route(
        "GET", "/v1/export", export.export, "export",
        "Stream matching rows as JSONL, OpenAI chat fine-tuning lines or CSV.",
        answer="The rows, streamed.", errors=(*READ_ERRORS, 404), params=export.PARAMS,
        content={
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    ),
    Route(
        "GET", "/v1/cache", cache.cache_stats, "cache_stats",
        "Entries and bytes the response cache holds.",
        answer="Held.", errors=READ_ERRORS,
        data={
            "type": "object",
            "required": ["entries", "bytes"],
            "properties": {"entries": {"type": "integer"}, "bytes": {"type": "integer"}},
        },
    ),
    Route(
        "DELETE", "/v1/cache", cache.cache_purge, "cache_purge",
        "Purge cache entries, all or those matching every filter given.",
        answer="Purged.", errors=READ_ERRORS,
        data={
            "type": "object",
            "required": ["deleted"],
            "properties": {"deleted": {"type": "integer"}},
        },
        params=(
            *(Param(name, "query", str) for name in cache.TEXT_FILTERS),
            Param("older_than_s", "query", Annotated[float, Field(ge=0)]),
        ),
    ),
    Route(
        "POST", "/v1/helicone-dataset", datasets.create, "dataset_create",
        "Create a dataset from request ids and/or a filter tree.", DatasetCreateBody,
        status=201, answer="Created.", data={"type": "object"}, errors=(400, 401, 409, 503),
    ),
    Route(
        "POST", "/v1/helicone-dataset/query", datasets.query, "dataset_query",
        "List datasets, all or by id.", DatasetListBody,
        answer="Datasets.", data={"type": "array"}, errors=READ_ERRORS,
    ),
    Route(
        "POST", "/v1/helicone-dataset/{id}/mutate", datasets.mutate, "dataset_mutate",
        "Add or remove rows by id, or add rows by filter.", DatasetMutateBody,
        answer="Changed.", data={"type": "object"}, errors=(400, 401, 404, 503),
        params=DATASET,
    ),
    Route(
        "POST", "/v1/helicone-dataset/{id}/delete", datasets.delete, "dataset_delete",
        "Delete a dataset (its requests stay logged).",
        answer="Deleted.", data={"type": "object"}, errors=(401, 404, 503), params=DATASET,
    ),
    Route(
        "POST", "/v1/request/{id:[^/]+}/feedback", feedback.request_feedback,
        "request_feedback", "Rate a logged request; a second call changes the rating.",
        FeedbackBody, keys="feedback", cors=True, metered=True,
        answer="Stored.", data=Feedback, errors=WRITE_ERRORS, params=REQUEST_ID,
    ),
    Route(
        "POST", "/v1/request/{id:[^/]+}/score", feedback.request_score, "request_score",
        "Set named scores on a logged request (upsert per name).", ScoresBody,
        keys="feedback", cors=True, metered=True,
        status=201, answer="Stored.", data=Scores, errors=WRITE_ERRORS, params=REQUEST_ID,
    ),
    Route(
        "PUT", "/v1/request/{id:[^/]+}/property", feedback.request_property,
        "request_property", "Set one property of a logged request (Helicone's upsert).",
        PropertyBody, answer="Set; data is null.", data={"type": "null"},
        errors=(400, 401, 404, 409, 503), params=REQUEST_ID,
    ),
    Route(
        "GET", "/v1/request/{id:[^/]+}/history", feedback.request_history, "request_history",
        "Earlier exchanges logged under this id: a call with a different body under a used "
        "Helicone-Request-Id moves the one before here, with its feedback, scores and datasets.",
        answer="Oldest first; each the whole record plus seq and replaced_at.",
        data={"type": "array", "items": {"type": "object"}}, errors=(400, 401, 404, 503),
        params=REQUEST_ID,
    ),
    Route(
        "GET", "/v1/request/{id:[^/]+}", feedback.request_detail, "request_detail",
        "The logged exchange with its feedback, scores and session.",
        cors=True, metered=True,
        answer="The exchange.", data=LoggedRequest, errors=(400, 401, 404, 503),
        params=REQUEST_ID,
    ),
    Route(
        "POST", "/v1/session/{id:[^/]+}/feedback", feedback.session_feedback,
        "session_feedback", "Rate a session; 404 unless one of its requests was logged.",
        SessionFeedbackBody, keys="feedback", cors=True, metered=True,
        answer="Stored.", data=SessionFeedback, errors=WRITE_ERRORS,
        params=(Param("id", "path", SessionIdParam),),
    ),
    Route(
        "POST", "/v1/feedback", feedback.legacy_feedback, "legacy_feedback",
        "Helicone's legacy feedback body, as old SDKs send it.", LegacyFeedbackBody,
        keys="feedback", cors=True, metered=True,
        answer="Stored.", data=Feedback, errors=WRITE_ERRORS,
    ),
    Route(
        "POST", "/v1/feedback/batch", feedback.feedback_batch, "feedback_batch",
        f"Rate up to {MAX_BATCH_ITEMS} requests; each item gets its own status.", BatchBody,
        keys="feedback", cors=True, metered=True,
        answer="Per-item results.", data=BatchResult, errors=(400, 401, 413, 503),
    ),
)  # fmt: skip

# Paths of Helicone's management API: whatever relaylog does not serve under them is a 404 in
# the {data, error} envelope, never forwarded upstream with the caller's credentials.
RESERVED: tuple[str, ...] = ("/v1/request", "/v1/session", "/v1/feedback", "/v1/helicone-dataset")
