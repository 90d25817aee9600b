"""relaylog's exceptions (plain classes: the log writer process imports them without aiohttp).

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
maps them to 503, 400, 404 and 409 at the API's edge. proxy/envelopes.py renders ApiError.
"""

from __future__ import annotations

FORWARD_ROUTE = "forward"


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
