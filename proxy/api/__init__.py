"""The management API's route table: every route, its handler, body, keys, CORS and summary.

create_app() mounts ROUTES once, in this order, before the forward catch-all: a fixed path
such as `/v1/request/query` comes before `/v1/request/{id}`, which would otherwise take
`query` as an id. `{id:[^/]+}` rather than aiohttp's default `[^{}/]+`, so an id with a
brace reaches its handler and gets a 400 instead of falling through to the upstream.
"""

from __future__ import annotations

from proxy.api import cache, datasets, export, feedback, health, openapi, requests
from proxy.api.http import Route
from proxy.api.models import (
    BatchBody,
    DatasetCreateBody,
    DatasetListBody,
    DatasetMutateBody,
    FeedbackBody,
    LegacyFeedbackBody,
    QueryBody,
    ScoresBody,
    SessionFeedbackBody,
    StatsBody,
)
from proxy.metrics import metrics

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", health.healthz, "healthz", "Liveness: the process answers.",
          keys="open"),
    Route("GET", "/readyz", health.readyz, "readyz",
          "Readiness: the store answers; queue depth and drops so far.", keys="open"),
    Route("GET", "/metrics", metrics, "metrics",
          "Prometheus metrics: requests, latency, feedback calls, log queue.", keys="open"),
    Route("GET", "/openapi.json", openapi.openapi, "openapi", "This document.", keys="open"),
    Route("POST", "/v1/request/query", requests.request_query, "request_query",
          "Logged requests matching a filter tree, a page at a time.", QueryBody),
    Route("POST", "/v1/request/stats", requests.stats, "request_stats",
          "Totals and latency percentiles, optionally grouped.", StatsBody),
    Route("GET", "/v1/export", export.export, "export",
          "Stream matching rows as JSONL, OpenAI chat fine-tuning lines or CSV."),
    Route("GET", "/v1/cache", cache.cache_stats, "cache_stats",
          "Entries and bytes the response cache holds."),
    Route("DELETE", "/v1/cache", cache.cache_purge, "cache_purge",
          "Purge cache entries, all or those matching every filter given."),
    Route("POST", "/v1/helicone-dataset", datasets.create, "dataset_create",
          "Create a dataset from request ids and/or a filter tree.", DatasetCreateBody),
    Route("POST", "/v1/helicone-dataset/query", datasets.query, "dataset_query",
          "List datasets, all or by id.", DatasetListBody),
    Route("POST", "/v1/helicone-dataset/{id}/mutate", datasets.mutate, "dataset_mutate",
          "Add or remove rows by id, or add rows by filter.", DatasetMutateBody),
    Route("POST", "/v1/helicone-dataset/{id}/delete", datasets.delete, "dataset_delete",
          "Delete a dataset (its requests stay logged)."),
    Route("POST", "/v1/request/{id:[^/]+}/feedback", feedback.request_feedback,
          "request_feedback", "Rate a logged request; a second call changes the rating.",
          FeedbackBody, keys="feedback", cors=True, metered=True),
    Route("POST", "/v1/request/{id:[^/]+}/score", feedback.request_score, "request_score",
          "Set named scores on a logged request (upsert per name).", ScoresBody,
          keys="feedback", cors=True, metered=True),
    Route("GET", "/v1/request/{id:[^/]+}", feedback.request_detail, "request_detail",
          "The logged exchange with its feedback, scores and session.",
          cors=True, metered=True),
    Route("POST", "/v1/session/{id:[^/]+}/feedback", feedback.session_feedback,
          "session_feedback", "Rate a session; 404 unless one of its requests was logged.",
          SessionFeedbackBody, keys="feedback", cors=True, metered=True),
    Route("POST", "/v1/feedback", feedback.legacy_feedback, "legacy_feedback",
          "Helicone's legacy feedback body, as old SDKs send it.", LegacyFeedbackBody,
          keys="feedback", cors=True, metered=True),
    Route("POST", "/v1/feedback/batch", feedback.feedback_batch, "feedback_batch",
          "Rate up to 1000 requests; each item gets its own status.", BatchBody,
          keys="feedback", cors=True, metered=True),
)  # fmt: skip
