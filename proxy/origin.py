"""Host allowlist and cross-site policy: DNS rebinding and cross-site pages never reach a handler.

A browser page can make relaylog's port same-origin with itself (DNS rebinding: the page's name
resolves to 127.0.0.1) or send it CORS-simple requests from any origin. This middleware answers
only `Host` values that name the listen address or a configured name (421 otherwise), refuses
requests a browser sent from another origin (403) unless the route grants that origin, requires a
JSON body on writes so no cross-site form or `text/plain` post is accepted (415), and answers
CORS preflights on forwarded routes itself, so the upstream never decides relaylog's policy.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from proxy.config import Settings
from proxy.errors import FORWARD_ROUTE, ApiError
from proxy.gateway.headers import new_request_id
from proxy.state import SITE_POLICY

log = logging.getLogger("relaylog.origin")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
ANY_HOST = "*"
READ_METHODS = frozenset({"GET", "HEAD"})
# Body types a browser sends cross-site without a preflight; multipart is needed by uploads and
# is kept safe by the origin check instead.
SIMPLE_BODY_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded"})
FORWARD_METHODS = "GET, POST, PUT, PATCH, DELETE, HEAD"
# Routes a browser origin listed in feedback.cors_origins may call: feedback and score writes.
FEEDBACK_WRITE_ROUTES = frozenset(
    {"request_feedback", "request_score", "session_feedback", "legacy_feedback", "feedback_batch"}
)
WARN_EVERY_S = 10.0
# Host values (with the address they arrived on) remembered as allowed, at most this many.
HOST_MEMO = 1024


def normal_host(value: str) -> str:
    """A `Host` value lowercased, without a trailing dot on the name."""
    host = value.strip().lower()
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and not name.endswith(":"):
        return f"{name.rstrip('.')}:{port}"
    return host.rstrip(".")


def _split(host: str) -> tuple[str, str]:
    """`(name, port)` of a normalised Host value; port is '' when absent."""
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest.removeprefix(":")
    name, sep, port = host.rpartition(":")
    return (name, port) if sep and port.isdigit() else (host, "")


@functools.lru_cache(maxsize=64)
def _literal(address: str) -> str:
    """An IP address as it appears in a Host header (IPv6 in brackets).

    Cached: the addresses are the few the server listens on, and parsing one took ~5 us of
    every request."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    return f"[{ip}]" if ip.version == 6 else str(ip)


class _Throttle:
    """At most one warning per interval, so a flood of refusals cannot flood the log."""

    def __init__(self) -> None:
        self._last = 0.0
        self.refused = 0

    def warn(self, message: str, *args: object) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last >= WARN_EVERY_S:
            self._last = now
            log.warning(message + " (%d refused so far)", *args, self.refused)


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """The configured names and origins, built once from the settings."""

    hostnames: frozenset[str]  # normalised `name` (any port) or `name:port` entries
    feedback_origins: frozenset[str]
    refusals: _Throttle = field(default_factory=_Throttle, compare=False)
    # (raw Host, local address) -> the normalised host, for values already allowed: a client
    # sends the same Host on every call.
    allowed: dict[tuple[str, tuple[str, int] | None], str] = field(
        default_factory=dict, compare=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> SitePolicy:
        return cls(
            hostnames=frozenset(normal_host(h) for h in settings.server.hostnames if h.strip()),
            feedback_origins=frozenset(
                o.strip().rstrip("/") for o in settings.feedback.cors_origins
            ),
        )

    def host_allowed(self, host: str, local: tuple[str, int] | None) -> bool:
        """True when `host` names the address the connection arrived on or a configured name."""
        if ANY_HOST in self.hostnames:
            return True
        name, port = _split(host)
        if host in self.hostnames or name in self.hostnames:
            return True
        if local is None:  # a Unix socket: no port to match
            return name in LOOPBACK_NAMES
        address, local_port = local
        port_matches = local_port == 80 if port == "" else port == str(local_port)
        return port_matches and (name in LOOPBACK_NAMES or name == _literal(address))

    def grants_feedback(self, origin: str) -> bool:
        return ANY_HOST in self.feedback_origins or origin in self.feedback_origins


def _local_address(request: web.Request) -> tuple[str, int] | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        return str(sockname[0]), int(sockname[1])
    return None


def _origin_authority(origin: str) -> str | None:
    """`host[:port]` of an Origin header, without its scheme's default port; None if opaque."""
    try:
        url = URL(origin)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.raw_host:
        return None
    authority = url.raw_authority.lower()
    default = ":80" if url.scheme == "http" else ":443"
    return authority.removesuffix(default)


def foreign_origin(request: web.Request, host: str) -> str | None:
    """The origin of a browser request from another site, or None (same origin or not a browser).

    `Origin` is compared with the request's `Host`; without `Origin`, `Sec-Fetch-Site` tells a
    cross-site or same-site (another port, another subdomain) request from a same-origin one.
    """
    origin = request.headers.get("Origin")
    if origin is not None:
        authority = _origin_authority(origin.strip())
        if authority is not None and authority == host.removesuffix(":80"):
            return None
        return origin.strip().rstrip("/") or "null"
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        return f"a {site} page"
    return None


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _refusal_headers(request: web.Request) -> dict[str, str]:
    """A refused forwarded call still gets its helicone-id, like every forwarded answer."""
    if request.match_info.route.name != FORWARD_ROUTE:
        return {}
    return {"helicone-id": new_request_id(), "Helicone-Status": "failed"}


def _check_host(request: web.Request, policy: SitePolicy) -> str:
    raw = request.headers.get("Host")
    local = _local_address(request)
    if raw is not None:
        known = policy.allowed.get((raw, local))
        if known is not None:
            return known
    host = normal_host(raw) if raw else ""
    if not host or not policy.host_allowed(host, local):
        policy.refusals.warn(
            "refused a request for Host %r; add the name to server.hostnames if it is yours",
            (raw or "")[:100],
        )
        raise ApiError(
            421,
            f"Host {(raw or '')[:100]!r} is not an address relaylog serves; "
            "add it to server.hostnames",
            code="misdirected_request",
            headers=_refusal_headers(request),
        )
    if raw is not None and len(policy.allowed) < HOST_MEMO:
        policy.allowed[(raw, local)] = host
    return host


def _check_origin(
    request: web.Request, policy: SitePolicy, origin: str | None, route: str | None
) -> bool:
    """403 for a request from `origin` (another one) the route does not grant; True when
    granted."""
    if origin is None:
        return False
    if route in FEEDBACK_WRITE_ROUTES and policy.grants_feedback(origin):
        return True
    if route != FORWARD_ROUTE and request.method in READ_METHODS:
        # A top-level navigation (a link) cannot read the answer and changes nothing.
        if request.headers.get("Sec-Fetch-Mode", "").lower() == "navigate":
            return False
    raise ApiError(
        403,
        f"requests from {origin[:100]!r} are refused: relaylog accepts browser calls only from "
        "its own origin (feedback.cors_origins grants feedback and scores)",
        code="cross_origin_refused",
        headers=_refusal_headers(request),
    )


@functools.lru_cache(maxsize=64)
def _is_simple_body(content_type: str) -> bool:
    """A body type a browser sends cross-site without a preflight (cached: clients send the
    same few)."""
    return content_type.split(";", 1)[0].strip().lower() in SIMPLE_BODY_TYPES


def _check_body_type(request: web.Request, same_origin_page: bool, route: str | None) -> None:
    """415 for a write whose body a cross-site page could have sent without a preflight."""
    if request.method in READ_METHODS or request.method == "OPTIONS":
        return
    content_type = request.headers.get("Content-Type", "")
    if route == FORWARD_ROUTE:
        if not request.body_exists:
            return
        if not _is_simple_body(content_type):
            return
        message = "send the body as application/json (or multipart/form-data for uploads)"
    else:
        if _is_json(content_type) or same_origin_page:
            return
        if not content_type and not request.body_exists:
            return
        message = "send the body as application/json"
    raise ApiError(
        415,
        f"Content-Type {content_type[:100]!r} is not accepted here: {message}",
        code="unsupported_media_type",
        headers=_refusal_headers(request),
    )


async def _preflight() -> web.StreamResponse:
    return web.Response(status=204, headers={"Allow": FORWARD_METHODS})


@web.middleware
def site_middleware(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
    """Host allowlist, then origin, then body type; preflights on forwarded routes end here.

    A plain function that returns the handler's coroutine rather than a coroutine of its own,
    so a call passes through one frame fewer on every resumption. Its refusals are raised when
    it is called, which must be inside error_middleware (create_app lists it after).
    """
    policy = request.app[SITE_POLICY]
    host = _check_host(request, policy)
    route = request.match_info.route.name
    foreign = foreign_origin(request, host)
    _check_origin(request, policy, foreign, route)
    same_origin_page = foreign is None and "Origin" in request.headers
    _check_body_type(request, same_origin_page, route)
    if request.method == "OPTIONS" and route == FORWARD_ROUTE:
        return _preflight()
    return handler(request)
