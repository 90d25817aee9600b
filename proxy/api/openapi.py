"""The OpenAPI 3.1 document of relaylog's own management API, served at /openapi.json."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from aiohttp import web

from proxy import __version__
from proxy.gateway.headers import REQUEST_ID_RE

JSON = "application/json"
Schema = dict[str, Any]

TIMESTAMP: Schema = {"type": "string", "description": "UTC, e.g. 2025-01-31T12:00:00.000Z"}
REQUEST_ID: Schema = {
    "type": "string",
    "pattern": f"^{REQUEST_ID_RE.pattern}$",
    "description": "A Helicone-Request-Id as logged (1-128 of [A-Za-z0-9._:@-]).",
    "examples": ["ticket-42-1700000000"],
}
SESSION_ID: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 1024,
    "examples": ["chat-7"],
}
# Dataset bodies name requests (and datasets) by any id of 1-128 characters.
DATASET_ITEM: Schema = {"type": "string", "minLength": 1, "maxLength": 128}
COMMENT: Schema = {
    "type": ["string", "null"],
    "description": "Free text, at most 4 KiB of UTF-8.",
}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["data", "error"],
        "properties": {"data": {"type": "null"}, "error": {"type": "string"}},
    },
    "FeedbackBody": {
        "type": "object",
        "required": ["rating"],
        "additionalProperties": False,
        "properties": {"rating": {"type": "boolean"}, "comment": COMMENT},
    },
    "SessionFeedbackBody": {
        "type": "object",
        "required": ["rating"],
        "additionalProperties": False,
        "properties": {"rating": {"type": "boolean"}},
    },
    "LegacyFeedbackBody": {
        "type": "object",
        "required": ["helicone-id", "rating"],
        "additionalProperties": False,
        "properties": {"helicone-id": REQUEST_ID, "rating": {"type": "boolean"}},
    },
    "BatchBody": {
        "type": "object",
        "required": ["items"],
        "additionalProperties": False,
        "properties": {
            "items": {
                "type": "array",
                "description": "At most 1000 items; more is a 413.",
                "items": {
                    "description": (
                        "{request_id, rating, comment?} like FeedbackBody; an invalid item gets "
                        "its own 400 result and does not sink the others."
                    ),
                },
            }
        },
    },
    "ScoresBody": {
        "type": "object",
        "required": ["scores"],
        "additionalProperties": False,
        "properties": {
            "scores": {
                "type": "object",
                "propertyNames": {"minLength": 1, "maxLength": 128},
                "additionalProperties": {"type": ["number", "boolean"]},
                "description": "Booleans are stored as 1/0; integers within ±2**53.",
            }
        },
    },
    "Feedback": {
        "type": "object",
        "required": ["request_id", "rating", "created_at", "updated_at"],
        "properties": {
            "request_id": {"type": "string"},
            "rating": {"type": "boolean"},
            "comment": COMMENT,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "SessionFeedback": {
        "type": "object",
        "required": ["session_id", "rating", "created_at", "updated_at"],
        "properties": {
            "session_id": {"type": "string"},
            "rating": {"type": "boolean"},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
    },
    "Scores": {
        "type": "object",
        "required": ["request_id", "scores"],
        "properties": {
            "request_id": {"type": "string"},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "BatchResult": {
        "type": "object",
        "required": ["stored", "failed", "results"],
        "properties": {
            "stored": {"type": "integer"},
            "failed": {"type": "integer"},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "request_id", "status", "data", "error"],
                    "properties": {
                        "index": {"type": "integer"},
                        "request_id": {"type": ["string", "null"]},
                        "status": {"type": "integer"},
                        "data": {
                            "oneOf": [{"$ref": "#/components/schemas/Feedback"}, {"type": "null"}]
                        },
                        "error": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
    "QueryBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "filter": {"$ref": "#/components/schemas/Filter"},
            "offset": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "sort": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"enum": ["created_at", "latency", "cost"]},
                "additionalProperties": {"enum": ["asc", "desc"]},
            },
            "cursor": {"type": ["string", "null"], "description": "Relaylog-Next-Cursor."},
            "isCached": {"type": ["boolean", "null"]},
            "includeInputs": {"type": ["boolean", "null"]},
            "isPartOfExperiment": {"type": ["boolean", "null"]},
            "isScored": {"type": ["boolean", "null"]},
        },
    },
    "StatsBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "filter": {"$ref": "#/components/schemas/Filter"},
            "group_by": {
                "description": "Up to three of day, model, user, outcome, path, property:NAME.",
                "oneOf": [
                    {"type": "string"},
                    {"type": "array", "maxItems": 3, "items": {"type": "string"}},
                ],
            },
        },
    },
    "Filter": {
        "description": (
            'Helicone\'s filter tree: "all", a leaf such as '
            '{"request": {"model": {"equals": "gpt-4o"}}}, or {"left", "operator", "right"}.'
        ),
    },
    "DatasetCreateBody": {
        "type": "object",
        "required": ["datasetName"],
        "additionalProperties": False,
        "properties": {
            "datasetName": {"type": "string", "minLength": 1, "maxLength": 128},
            "requestIds": {"type": "array", "maxItems": 10_000, "items": DATASET_ITEM},
            "filter": {"$ref": "#/components/schemas/Filter"},
            "description": {"type": ["string", "null"], "maxLength": 4096},
            "meta": {"type": ["object", "null"]},
        },
    },
    "DatasetListBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "datasetIds": {
                "type": ["array", "null"],
                "maxItems": 10_000,
                "items": DATASET_ITEM,
            }
        },
    },
    "DatasetMutateBody": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "addRequests": {"type": "array", "maxItems": 10_000, "items": DATASET_ITEM},
            "removeRequests": {"type": "array", "maxItems": 10_000, "items": DATASET_ITEM},
            "addFilter": {"$ref": "#/components/schemas/Filter"},
        },
    },
    "Request": {
        "type": "object",
        "description": "One logged exchange with its feedback, scores, properties and session.",
        "required": ["id", "created_at", "method", "path", "outcome", "properties", "scores"],
        "properties": {
            "id": {"type": "string"},
            "created_at": TIMESTAMP,
            "method": {"type": "string"},
            "path": {"type": "string"},
            "status": {"type": ["integer", "null"]},
            "outcome": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "is_stream": {"type": "boolean"},
            "properties": {"type": "object", "additionalProperties": {"type": "string"}},
            "feedback": {"type": ["object", "null"]},
            "scores": {"type": "object", "additionalProperties": {"type": "number"}},
            "session": {"type": ["object", "null"]},
        },
    },
}


def _envelope(data: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["data", "error"],
        "properties": {"data": data, "error": {"type": "null"}},
    }


def _ok(description: str, data: Schema, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": _envelope(data)}}}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: {"$ref": f"#/components/responses/E{status}"} for status in statuses}


def _path_id(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": _ref(name)}}}


def _query(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


EXPORT_LISTS = ("model", "user", "session", "outcome", "property", "score")
READ_ERRORS = ("400", "401", "503")


ERRORS = {
    "400": "Invalid body or id.",
    "401": "Missing or wrong key (only when keys are configured).",
    "404": "No such request or session was logged.",
    "409": "A dataset with that name exists.",
    "413": "Body too large.",
    "415": "A body that is not application/json (a cross-site page could send it).",
    "503": "The store is unavailable.",
}
WRITE_ERRORS = ("400", "401", "404", "413", "503")


def _operations() -> dict[str, Any]:
    feedback_security: list[dict[str, list[str]]] = [{"proxyKey": []}, {"feedbackKey": []}, {}]
    read_security: list[dict[str, list[str]]] = [{"proxyKey": []}, {}]
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness: the process answers.",
                "security": [],
                "responses": _ok("Alive.", {"type": "object"}),
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Readiness: the store answers; queue depth and drops so far.",
                "security": [],
                "responses": _ok(
                    "Ready.",
                    {
                        "type": "object",
                        "required": ["status", "queue_depth", "dropped"],
                        "properties": {
                            "status": {"const": "ready"},
                            "queue_depth": {"type": "integer"},
                            "dropped": {"type": "integer"},
                        },
                    },
                )
                | _errors("503"),
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: requests, latency, feedback calls, log queue.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/v1/request/query": {
            "post": {
                "operationId": "request_query",
                "summary": "Logged requests matching a filter tree, a page at a time.",
                "security": read_security,
                "requestBody": _body("QueryBody", required=False),
                "responses": _ok("Rows in Helicone's shape.", {"type": "array"})
                | _errors(*READ_ERRORS),
            }
        },
        "/v1/request/stats": {
            "post": {
                "operationId": "request_stats",
                "summary": "Totals and latency percentiles, optionally grouped.",
                "security": read_security,
                "requestBody": _body("StatsBody", required=False),
                "responses": _ok("Aggregates.", {}) | _errors(*READ_ERRORS),
            }
        },
        "/v1/cache": {
            "get": {
                "operationId": "cache_stats",
                "summary": "Entries and bytes the response cache holds.",
                "security": read_security,
                "responses": _ok(
                    "Held.",
                    {
                        "type": "object",
                        "required": ["entries", "bytes"],
                        "properties": {
                            "entries": {"type": "integer"},
                            "bytes": {"type": "integer"},
                        },
                    },
                )
                | _errors(*READ_ERRORS),
            },
            "delete": {
                "operationId": "cache_purge",
                "summary": "Purge cache entries, all or those matching every filter given.",
                "security": read_security,
                "parameters": [
                    _query("model", {"type": "string"}),
                    _query("path", {"type": "string"}),
                    _query("seed", {"type": "string"}),
                    _query("older_than_s", {"type": "number", "minimum": 0}),
                ],
                "responses": _ok(
                    "Purged.",
                    {
                        "type": "object",
                        "required": ["deleted"],
                        "properties": {"deleted": {"type": "integer"}},
                    },
                )
                | _errors(*READ_ERRORS),
            },
        },
        "/v1/export": {
            "get": {
                "operationId": "export",
                "summary": "Stream matching rows as JSONL, OpenAI chat fine-tuning lines or CSV.",
                "security": read_security,
                "parameters": [
                    *(_query(n, {"type": "string"}) for n in EXPORT_LISTS),
                    _query("feedback", {"type": "string"}),
                    _query("since", {"type": "string"}),
                    _query("until", {"type": "string"}),
                    _query("dataset", {"type": "string"}),
                    _query("filter", {"type": "string", "description": "A filter tree as JSON."}),
                    _query("format", {"enum": ["jsonl", "openai-chat", "csv"]}),
                    _query("limit", {"type": "integer", "minimum": 1}),
                ],
                "responses": {
                    "200": {
                        "description": "The rows, streamed.",
                        "content": {
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }
                }
                | _errors(*READ_ERRORS),
            }
        },
        "/v1/helicone-dataset": {
            "post": {
                "operationId": "dataset_create",
                "summary": "Create a dataset from request ids and/or a filter tree.",
                "security": read_security,
                "requestBody": _body("DatasetCreateBody"),
                "responses": _ok("Created.", {"type": "object"}, "201")
                | _errors("400", "401", "409", "503"),
            }
        },
        "/v1/helicone-dataset/query": {
            "post": {
                "operationId": "dataset_query",
                "summary": "List datasets, all or by id.",
                "security": read_security,
                "requestBody": _body("DatasetListBody", required=False),
                "responses": _ok("Datasets.", {"type": "array"}) | _errors(*READ_ERRORS),
            }
        },
        "/v1/helicone-dataset/{id}/mutate": {
            "post": {
                "operationId": "dataset_mutate",
                "summary": "Add or remove rows by id, or add rows by filter.",
                "security": read_security,
                "parameters": [_path_id("id", {"type": "string", "minLength": 1})],
                "requestBody": _body("DatasetMutateBody", required=False),
                "responses": _ok("Changed.", {"type": "object"})
                | _errors("400", "401", "404", "503"),
            }
        },
        "/v1/helicone-dataset/{id}/delete": {
            "post": {
                "operationId": "dataset_delete",
                "summary": "Delete a dataset (its requests stay logged).",
                "security": read_security,
                "parameters": [_path_id("id", {"type": "string", "minLength": 1})],
                "responses": _ok("Deleted.", {"type": "object"}) | _errors("401", "404", "503"),
            }
        },
        "/v1/request/{id}/feedback": {
            "post": {
                "operationId": "request_feedback",
                "summary": "Rate a logged request; a second call changes the rating.",
                "security": feedback_security,
                "parameters": [_path_id("id", REQUEST_ID)],
                "requestBody": _body("FeedbackBody"),
                "responses": _ok("Stored.", _ref("Feedback")) | _errors(*WRITE_ERRORS),
            }
        },
        "/v1/request/{id}/score": {
            "post": {
                "operationId": "request_score",
                "summary": "Set named scores on a logged request (upsert per name).",
                "security": feedback_security,
                "parameters": [_path_id("id", REQUEST_ID)],
                "requestBody": _body("ScoresBody"),
                "responses": _ok("Stored.", _ref("Scores"), "201") | _errors(*WRITE_ERRORS),
            }
        },
        "/v1/request/{id}": {
            "get": {
                "operationId": "request_detail",
                "summary": "The logged exchange with its feedback, scores and session.",
                "security": read_security,
                "parameters": [_path_id("id", REQUEST_ID)],
                "responses": _ok("The exchange.", _ref("Request"))
                | _errors("400", "401", "404", "503"),
            }
        },
        "/v1/session/{id}/feedback": {
            "post": {
                "operationId": "session_feedback",
                "summary": "Rate a session; 404 unless one of its requests was logged.",
                "security": feedback_security,
                "parameters": [_path_id("id", SESSION_ID)],
                "requestBody": _body("SessionFeedbackBody"),
                "responses": _ok("Stored.", _ref("SessionFeedback")) | _errors(*WRITE_ERRORS),
            }
        },
        "/v1/feedback": {
            "post": {
                "operationId": "legacy_feedback",
                "summary": "Helicone's legacy feedback body, as old SDKs send it.",
                "security": feedback_security,
                "requestBody": _body("LegacyFeedbackBody"),
                "responses": _ok("Stored.", _ref("Feedback")) | _errors(*WRITE_ERRORS),
            }
        },
        "/v1/feedback/batch": {
            "post": {
                "operationId": "feedback_batch",
                "summary": "Rate up to 1000 requests; each item gets its own status.",
                "security": feedback_security,
                "requestBody": _body("BatchBody"),
                "responses": _ok("Per-item results.", _ref("BatchResult"))
                | _errors("400", "401", "413", "503"),
            }
        },
    }


def _with_body_type_errors(paths: dict[str, Any]) -> dict[str, Any]:
    """Every POST refuses a body that is not JSON (415), so no cross-site form can write."""
    for operations in paths.values():
        if "post" in operations:
            operations["post"]["responses"] |= _errors("415")
    return paths


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document; forwarded /v1 routes are OpenAI's API and are not described here."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "relaylog management API",
            "version": __version__,
            "description": (
                "Helicone-compatible feedback, score and request endpoints, plus health and "
                "metrics. Every JSON answer is an envelope {data, error}. Other /v1 paths are "
                "forwarded to the upstream OpenAI-compatible API."
            ),
        },
        "paths": _with_body_type_errors(_operations()),
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                f"E{status}": {
                    "description": description,
                    "content": {JSON: {"schema": _ref("Error")}},
                }
                for status, description in ERRORS.items()
            },
            "securitySchemes": {
                "proxyKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A proxy key (auth.proxy_keys), when keys are configured.",
                },
                "feedbackKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A feedback-only key (auth.feedback_keys): feedback and scores.",
                },
            },
        },
    }


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    """`GET /openapi.json`."""
    return web.Response(body=_document_bytes(), content_type=JSON)
