"""The OpenAPI 3.1 document of the management API, made from ROUTES and the pydantic models.

Every route in the table is an operation; its body and answer schemas come from the models
(pydantic's models_json_schema), its parameters from their types, its security from the
route's key policy. Served at /openapi.json.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from proxy import __version__
from proxy.api.http import Route, Schema, body_required

JSON = "application/json"
REF = "#/components/schemas/{model}"
ERRORS = {
    400: "Invalid body or id.",
    401: "Missing or wrong key (only when keys are configured).",
    404: "No such request, session or dataset.",
    409: "A dataset with that name exists.",
    413: "Body too large.",
    415: "A body that is not application/json (a cross-site page could send it).",
    503: "The store is unavailable.",
}
ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["data", "error"],
    "properties": {"data": {"type": "null"}, "error": {"type": "string"}},
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "open": [],
    "proxy": [{"proxyKey": []}, {}],
    "feedback": [{"proxyKey": []}, {"feedbackKey": []}, {}],
}
SECURITY_SCHEMES = {
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
}
# `{id:[^/]+}` in an aiohttp path is `{id}` in OpenAPI.
PATH_PATTERN = re.compile(r"\{(\w+):[^}]*\}")


def _ref(model: type[BaseModel]) -> Schema:
    return {"$ref": REF.format(model=model.__name__)}


def _schemas(routes: Sequence[Route]) -> dict[str, Schema]:
    """Every body and answer model the routes name, and the models those refer to."""
    models: list[type[BaseModel]] = []
    for route in routes:
        for model in (route.body, route.data):
            if isinstance(model, type) and model not in models:
                models.append(model)
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    return {"Error": ERROR_SCHEMA, **top.get("$defs", {})}


def _answer(route: Route) -> dict[str, Any]:
    if route.content is not None:
        content = route.content
    else:
        data = _ref(route.data) if isinstance(route.data, type) else route.data
        envelope = {
            "type": "object",
            "required": ["data", "error"],
            "properties": {"data": data, "error": {"type": "null"}},
        }
        content = {JSON: {"schema": envelope}}
    responses: dict[str, Any] = {
        str(route.status): {"description": route.answer, "content": content}
    }
    errors = {*route.errors, *((415,) if route.method == "POST" else ())}
    for status in sorted(errors):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    return responses


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "security": SECURITY[route.keys],
    }
    if route.params:
        operation["parameters"] = [
            {
                "name": param.name,
                "in": param.where,
                "required": param.where == "path" or param.required,
                "schema": TypeAdapter(param.type).json_schema(),
            }
            for param in route.params
        ]
    if route.body is not None:
        operation["requestBody"] = {
            "required": body_required(route.body),
            "content": {JSON: {"schema": _ref(route.body)}},
        }
    operation["responses"] = _answer(route)
    return operation


def build(routes: Sequence[Route]) -> dict[str, Any]:
    """The document for `routes`; forwarded /v1 routes are OpenAI's API and are not in it."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = PATH_PATTERN.sub(r"{\1}", route.path)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route)
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
        "paths": paths,
        "components": {
            "schemas": _schemas(routes),
            "responses": {
                f"E{status}": {
                    "description": description,
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for status, description in ERRORS.items()
            },
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@functools.cache
def document() -> dict[str, Any]:
    """The document for relaylog's ROUTES."""
    # The route table names this module's handler, so it is read when first asked for.
    from proxy.api import ROUTES

    return build(ROUTES)


@functools.cache
def _document_bytes() -> bytes:
    return orjson.dumps(document())


async def openapi(request: web.Request) -> web.Response:
    """`GET /openapi.json`."""
    return web.Response(body=_document_bytes(), content_type=JSON)
