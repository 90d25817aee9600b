"""ApiError rendered in its two envelopes, and the one middleware that does it.

Forwarded routes answer in OpenAI's error shape, so the SDKs raise their normal exceptions; the
management API answers `{"data", "error"}`. A bug is a 500 without a stack trace.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from proxy.errors import FORWARD_ROUTE, ApiError

log = logging.getLogger("relaylog")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout_error",
    413: "invalid_request_error",
    429: "requests",
    415: "invalid_request_error",
    421: "invalid_request_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}


def openai_error_body(err: ApiError) -> bytes:
    """OpenAI's error shape, which the SDKs turn into their normal exceptions."""
    return orjson.dumps(
        {
            "error": {
                "message": err.message,
                "type": ERROR_TYPES.get(err.status, "server_error"),
                "param": err.param,
                "code": err.code,
            }
        }
    )


def envelope(data: object, status: int = 200) -> web.Response:
    """The management API's success envelope."""
    return web.Response(
        body=orjson.dumps({"data": data, "error": None}),
        status=status,
        content_type="application/json",
    )


def envelope_error(err: ApiError) -> web.Response:
    return web.Response(
        body=orjson.dumps({"data": None, "error": err.message}),
        status=err.status,
        content_type="application/json",
        headers=err.headers,
    )


def _answer(request: web.Request, err: ApiError) -> web.Response:
    """`err` in the route's envelope: OpenAI's shape on forwarded routes, else the API's."""
    if request.match_info.route.name != FORWARD_ROUTE:
        return envelope_error(err)
    return web.Response(
        body=openai_error_body(err),
        status=err.status,
        content_type="application/json",
        headers=err.headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into the route's envelope; 500 only for bugs."""
    try:
        return await handler(request)
    except ApiError as err:
        return _answer(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _answer(request, ApiError(exc.status, exc.reason))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _answer(request, ApiError(500, "internal error; see relaylog's log"))
