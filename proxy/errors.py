"""relaylog's exceptions, and the one middleware that renders ApiError in two envelopes.

    ApiError                an answer with an HTTP status (never a stack trace)
      HeaderError           a Helicone-* header refused with 400 (server.strict_headers)
      RateLimited           a call over its Helicone-RateLimit-Policy (429, outcome rate_limited)
    ConfigError             settings that cannot be loaded (the CLI exits 2)
    PricingError            (ValueError) a price file or override that cannot be read
    CliError                a command-line usage problem reported on one line (exit 2)
    CommandFailed           a command that ran and failed: not found, refused (exit 1)
    ServeError              relaylog cannot start serving: listen policy, port, store (exit 1)
    ClientGone              the client closed its connection mid-stream
    BadBody                 the sandbox upstream's refusal of a request body

Storage raises its own (storage/errors.py): StoreError > RowRejected, QueryError (ValueError)
> FilterError, UnknownDataset (LookupError), DatasetExists (ValueError); proxy/api/http.py
maps them to 503, 400, 404 and 409 at the API's edge.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

log = logging.getLogger("relaylog")

FORWARD_ROUTE = "forward"

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


class ApiError(Exception):
    """An error answered to the client with `status`; never a stack trace."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class HeaderError(ApiError):
    """A Helicone header the proxy refuses (400)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(400, message, code="invalid_helicone_header", param=param)


class RateLimited(ApiError):
    """A call over its rate limit (429, logged with outcome `rate_limited`)."""


class ConfigError(Exception):
    """Settings that cannot be loaded; the message says which and why."""


class PricingError(ValueError):
    """A price file or override that cannot be read; the message says which and why."""


class CliError(Exception):
    """A usage problem (a flag's value) reported as one line on stderr with exit code 2."""


class CommandFailed(Exception):
    """A command that ran and failed (not found, refused, no store): one line, exit code 1."""


class ServeError(Exception):
    """relaylog cannot start serving (listen policy, port, store); one line for the operator."""


class ClientGone(Exception):
    """The client closed its connection while the answer was being streamed."""


class BadBody(Exception):
    """The request body is not the JSON object a sandbox endpoint needs."""


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


def _is_forwarded(request: web.Request) -> bool:
    return request.match_info.route.name == FORWARD_ROUTE


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's HTTP errors into the route's envelope; 500 only for bugs."""
    try:
        return await handler(request)
    except ApiError as err:
        if _is_forwarded(request):
            return web.Response(
                body=openai_error_body(err),
                status=err.status,
                content_type="application/json",
                headers=err.headers,
            )
        return envelope_error(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        mapped = ApiError(exc.status, exc.reason)
        if _is_forwarded(request):
            return web.Response(
                body=openai_error_body(mapped), status=exc.status, content_type="application/json"
            )
        return envelope_error(mapped)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        internal = ApiError(500, "internal error; see relaylog's log")
        if _is_forwarded(request):
            return web.Response(
                body=openai_error_body(internal), status=500, content_type="application/json"
            )
        return envelope_error(internal)
