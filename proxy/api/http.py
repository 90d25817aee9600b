"""Plumbing shared by the query and dataset endpoints: JSON bodies, the key guard, routes."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from proxy.auth import KeyRing, proxy_keyring
from proxy.bodies import read_bounded
from proxy.errors import ApiError, method_not_allowed
from proxy.state import SETTINGS
from storage.errors import DatasetExists, FilterError, QueryError, StoreError, UnknownDataset

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyT = TypeVar("BodyT", bound=BaseModel)
KEYS = web.AppKey("management_keys", KeyRing)


async def read_body(request: web.Request, model: type[BodyT]) -> BodyT:
    """The JSON body validated by `model` (an empty body is `{}`); 400 names the first problem."""
    server = request.app[SETTINGS].server
    raw = await read_bounded(request, server.max_body_bytes, server.body_timeout_s)
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "body must be a JSON object", code="invalid_body")
    return validate(model, data)


def validate(model: type[BodyT], data: object) -> BodyT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ApiError(400, f"{where}: {message}", code="invalid_body") from None


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


def guarded(handler: Handler) -> Handler:
    """Proxy key required when keys are configured; storage's errors mapped to statuses."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        request.app[KEYS].require(request.headers.get("Authorization"), "Authorization")
        try:
            return await handler(request)
        except DOMAIN_ERRORS as exc:
            raise domain_error(exc) from exc

    return wrapped


def add_routes(app: web.Application, routes: Sequence[tuple[str, str, Handler]]) -> None:
    """Register guarded routes; other methods on their paths get 405, never the upstream."""
    if KEYS not in app:
        app[KEYS] = proxy_keyring(app[SETTINGS].auth)
    for path, method, handler in routes:
        resource = app.router.add_resource(path)
        resource.add_route(method, guarded(handler))
        resource.add_route("*", method_not_allowed(method))
