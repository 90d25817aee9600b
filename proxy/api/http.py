"""The management API's plumbing: the Route record, endpoint() around every handler, bodies.

endpoint() checks the route's keys, adds CORS headers (errors included), reads and validates
the body with read_model(), maps storage's errors to statuses and counts metered calls.
mount() registers a route table: other methods on a path get 405 (never the upstream), and
CORS routes answer the browser's preflight.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ValidationError

from proxy.api.models import Body, json_type
from proxy.auth import KeyPolicy, presented_key
from proxy.bodies import read_bounded
from proxy.errors import ApiError
from proxy.state import METRICS, POLICY, RECORDER, SETTINGS
from storage.errors import DatasetExists, FilterError, QueryError, StoreError, UnknownDataset

CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE_S = "600"
MAX_PROBLEMS = 3

ModelT = TypeVar("ModelT", bound=BaseModel)
# A handler takes the request, and the validated body when its route has one.
RouteHandler = Callable[..., Awaitable[web.StreamResponse]]
Schema = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter: its name, where it is, and its type (for its schema)."""

    name: str
    where: Literal["path", "query"]
    type: Any
    required: bool = False


@dataclass(frozen=True, slots=True)
class Route:
    """One management endpoint: what serves it, who may call it, and how OpenAPI shows it.

    The answer is `status` with the envelope's `data` described by `data` (an Answer model or
    a schema), or by `content` (a whole content map) when it is not an envelope.
    """

    method: str
    path: str
    handler: RouteHandler
    name: str
    summary: str
    body: type[Body] | None = None
    keys: KeyPolicy = "proxy"
    cors: bool = False
    # Counted in relaylog_feedback_requests_total.
    metered: bool = False
    status: int = 200
    answer: str = "OK."
    data: type[BaseModel] | Schema = field(default_factory=dict)
    content: Schema | None = None
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()


def _problems(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False)[:MAX_PROBLEMS]:
        where = ".".join(str(part)[:64] for part in error["loc"]) or "body"
        problems.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(problems)


def validate(model: type[ModelT], data: object) -> ModelT:
    """`data` as `model`; 400 naming the first problems otherwise."""
    if not isinstance(data, dict):
        raise ApiError(
            400, f"body must be a JSON object, not {json_type(data)}", code="invalid_body"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, f"invalid body: {_problems(exc)}", code="invalid_body") from None


def body_required(model: type[BaseModel]) -> bool:
    """Whether a body must be sent: an empty body stands for `{}` when no field is required."""
    return any(f.is_required() for f in model.model_fields.values())


async def read_model(request: web.Request, model: type[Body]) -> Body:
    """The JSON body, bounded in size and time, validated by `model`."""
    server = request.app[SETTINGS].server
    limit = min(server.max_body_bytes, model.max_bytes or server.max_body_bytes)
    raw = await read_bounded(request, limit, server.body_timeout_s)
    if not raw.strip():
        if body_required(model):
            raise ApiError(400, "body is empty; send a JSON object", code="invalid_body")
        return validate(model, {})
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_body") from None
    return validate(model, data)


def domain_error(exc: Exception) -> ApiError:
    """The API's answer to an error storage raised: 400, 404, 409 or 503."""
    if isinstance(exc, FilterError):
        return ApiError(400, str(exc), code="invalid_filter")
    if isinstance(exc, QueryError):
        return ApiError(400, str(exc), code="invalid_query")
    if isinstance(exc, UnknownDataset):
        return ApiError(404, str(exc), code="unknown_dataset")
    if isinstance(exc, DatasetExists):
        return ApiError(409, str(exc), code="dataset_exists")
    return ApiError(503, f"store unavailable: {exc}")


DOMAIN_ERRORS = (StoreError, QueryError, UnknownDataset, DatasetExists)


def _cors_headers(request: web.Request) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if origin is None or not request.app[POLICY].allows_origin(origin):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


async def _call(route: Route, request: web.Request) -> web.StreamResponse:
    keys = request.app[POLICY].keyring(route.keys)
    if keys is not None:
        keys.require(presented_key(request), "Authorization")
    if route.keys == "proxy":
        # Read your writes: the log's readers see every exchange answered before the call
        # arrived, once the writer has committed them (or after feedback.wait_ms).
        await request.app[RECORDER].caught_up(request.app[SETTINGS].feedback.wait_ms / 1000)
    if route.body is None:
        return await route.handler(request)
    return await route.handler(request, await read_model(request, route.body))


def endpoint(route: Route) -> Handler:
    """The aiohttp handler for `route`: keys, CORS, body, storage errors, metrics."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        cors = _cors_headers(request) if route.cors else {}
        status = 500
        try:
            response = await _call(route, request)
            status = response.status
        except ApiError as err:
            status = err.status
            err.headers.update(cors)
            raise
        except DOMAIN_ERRORS as exc:
            mapped = domain_error(exc)
            status = mapped.status
            mapped.headers.update(cors)
            raise mapped from exc
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if route.metered:
                request.app[METRICS].count_feedback(route.name, status)
        if cors:
            response.headers.update(cors)
        return response

    wrapped.__name__ = wrapped.__qualname__ = route.name
    return wrapped


def preflight(methods: str) -> Handler:
    """Answer a browser's CORS preflight; no key is needed (browsers send none)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None:
            return web.Response(status=204, headers={"Allow": methods})
        if not request.app[POLICY].allows_origin(origin):
            raise ApiError(
                403,
                f"origin {origin!r} may not call this endpoint; add it to feedback.cors_origins",
                code="origin_not_allowed",
            )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": methods,
                "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": CORS_MAX_AGE_S,
                "Vary": "Origin",
            },
        )

    return answer


def method_not_allowed(methods: str) -> Handler:
    """A handler for the other methods on a management path: 405, never forwarded upstream."""

    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise ApiError(
            405,
            f"{request.method} is not allowed on {request.path}; use {methods}",
            headers={"Allow": methods},
        )

    return not_allowed


def reserve(app: web.Application, prefixes: Sequence[str]) -> None:
    """Answer every other path under `prefixes` (the prefix itself included) with a 404.

    Register after mount() and before the forward catch-all.
    """

    async def unknown(request: web.Request) -> web.StreamResponse:
        raise ApiError(
            404,
            f"relaylog has no endpoint {request.method} {request.path}; "
            "its management API is listed at /openapi.json",
            code="unknown_endpoint",
        )

    # One resource per parent path, its last segments as alternatives: every forwarded call is
    # matched against these before the catch-all, one regex instead of one per prefix.
    leaves: dict[str, list[str]] = {}
    for prefix in prefixes:
        parent, _, leaf = prefix.rpartition("/")
        leaves.setdefault(parent, []).append(re.escape(leaf))
    for parent, names in leaves.items():
        app.router.add_route("*", f"{parent}/{{tail:(?:{'|'.join(names)})(?:/.*)?}}", unknown)


def mount(app: web.Application, routes: Sequence[Route]) -> None:
    """Register `routes` in order (before the forward catch-all), one resource per path."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    for path, served in by_path.items():
        resource = app.router.add_resource(path, name=served[0].name)
        methods = [route.method for route in served]
        if any(route.cors for route in served):
            methods.append("OPTIONS")
            resource.add_route("OPTIONS", preflight(", ".join(methods)))
        for route in served:
            handler = endpoint(route)
            resource.add_route(route.method, handler)
            if route.method == "GET":
                resource.add_route("HEAD", handler)
        resource.add_route("*", method_not_allowed(", ".join(methods)))
