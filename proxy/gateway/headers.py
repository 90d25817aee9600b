"""Helicone header parsing and header policy: pure functions, no sockets."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from proxy.errors import HeaderError

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "helicone-auth",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "openai-api-key",
        "cookie",
        "set-cookie",
        "proxy-authorization",
    }
)
# Headers the proxy recomputes itself when forwarding a request upstream. The body has been
# read whole (no 100-continue to wait for) and decoded (aiohttp undoes Content-Encoding).
RECOMPUTED_REQUEST = frozenset(
    {"host", "content-length", "accept-encoding", "expect", "content-encoding"}
)
# Headers the proxy recomputes itself when answering the client.
RECOMPUTED_RESPONSE = frozenset({"content-length", "content-encoding", "date", "server"})

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
MAX_PROPERTIES = 64
MAX_PROPERTY_BYTES = 1024
MAX_FIELD_CHARS = 1024
PROPERTY_PREFIX = "helicone-property-"


@dataclass(slots=True)
class HeliconeOptions:
    """What the client asked for through `Helicone-*` headers."""

    request_id: str
    properties: dict[str, str] = field(default_factory=dict)
    user_id: str | None = None
    session_id: str | None = None
    session_path: str | None = None
    session_name: str | None = None
    omit_request: bool = False
    omit_response: bool = False
    stream_usage: bool = False
    auth: str | None = None


@dataclass(slots=True)
class RequestHeaders:
    """A request's headers read in one pass: what is logged, what goes upstream, Helicone's."""

    logged: dict[str, str] = field(default_factory=dict)
    upstream: dict[str, str] = field(default_factory=dict)
    # The first value of each `Helicone-*` header, by lowercased name.
    helicone: dict[str, str] = field(default_factory=dict)
    # `Helicone-Property-*` headers as (name, value), in the order they came.
    properties: list[tuple[str, str]] = field(default_factory=list)
    has_authorization: bool = False


def scan_headers(headers: Mapping[str, str]) -> RequestHeaders:
    """Sort every request header once: each name is lowercased and classified a single time.

    Logged: credentials removed, names lowercased. Upstream: hop-by-hop, recomputed,
    `Helicone-*` headers and those named in `Connection:` removed.
    """
    out = RequestHeaders()
    logged, upstream, helicone = out.logged, out.upstream, out.helicone
    connection: list[str] = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered not in CREDENTIAL_HEADERS:
            logged[lowered] = value
        if lowered.startswith("helicone-"):
            if lowered.startswith(PROPERTY_PREFIX):
                out.properties.append((name, value))
            elif lowered not in helicone:
                helicone[lowered] = value
        elif lowered == "connection":
            connection.append(value)
        elif lowered not in HOP_BY_HOP and lowered not in RECOMPUTED_REQUEST:
            upstream[name] = value
    if connection:
        named = frozenset(t.strip().lower() for v in connection for t in v.split(",") if t.strip())
        for name in [n for n in upstream if n.lower() in named]:
            del upstream[name]
    out.has_authorization = any(n.lower() == "authorization" for n in upstream)
    return out


def is_valid_request_id(value: str) -> bool:
    """True when `value` may be used verbatim as a request id."""
    return REQUEST_ID_RE.fullmatch(value) is not None


def new_request_id() -> str:
    """A time-ordered UUID (version 7: 48 bits of Unix milliseconds, then 74 random bits).

    Ids drawn one after another sort together, so each insert into the id-keyed indexes of
    the store lands on the same few pages instead of a random one (a version-4 id cost SQLite
    two to three times the CPU per logged row).
    """
    h = f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-7{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _utf8(name: str, value: str) -> bytes:
    """The header value as UTF-8; relaylog refuses Helicone headers that are not valid UTF-8."""
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise HeaderError(f"{name} is not valid UTF-8", name) from None


def _flag(headers: Mapping[str, str], name: str) -> bool:
    raw = headers.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise HeaderError(f"{name} must be 'true' or 'false', got {raw[:40]!r}", name)


def _text(headers: Mapping[str, str], name: str) -> str | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    _utf8(name, value)
    if len(value) > MAX_FIELD_CHARS:
        raise HeaderError(f"{name} is longer than {MAX_FIELD_CHARS} characters", name)
    return value or None


def helicone_options(scanned: RequestHeaders) -> HeliconeOptions:
    """Read every `Helicone-*` header the proxy honours; raise HeaderError on bad input."""
    found = scanned.helicone
    raw_id = found.get("helicone-request-id")
    if raw_id is None:
        request_id = new_request_id()
    else:
        request_id = raw_id.strip()
        if not is_valid_request_id(request_id):
            raise HeaderError(
                "Helicone-Request-Id must be 1-128 characters from [A-Za-z0-9._:@-] "
                "starting with a letter or digit",
                "Helicone-Request-Id",
            )
    properties: dict[str, str] = {}
    for name, value in scanned.properties:
        key = name.lower()[len(PROPERTY_PREFIX) :]
        if not key:
            raise HeaderError("Helicone-Property- needs a name after the prefix", name)
        if len(_utf8(name, value)) > MAX_PROPERTY_BYTES:
            raise HeaderError(f"{name} is larger than {MAX_PROPERTY_BYTES} bytes", name)
        properties[key] = value
        if len(properties) > MAX_PROPERTIES:
            raise HeaderError(f"at most {MAX_PROPERTIES} Helicone-Property-* headers", name)
    session_path = _text(found, "helicone-session-path")
    if session_path is not None and not session_path.startswith("/"):
        session_path = "/" + session_path
    return HeliconeOptions(
        request_id=request_id,
        properties=properties,
        user_id=_text(found, "helicone-user-id"),
        session_id=_text(found, "helicone-session-id"),
        session_path=session_path,
        session_name=_text(found, "helicone-session-name"),
        omit_request=_flag(found, "helicone-omit-request"),
        omit_response=_flag(found, "helicone-omit-response"),
        stream_usage=_flag(found, "helicone-stream-usage"),
        auth=found.get("helicone-auth"),
    )


def parse_helicone(headers: Mapping[str, str]) -> HeliconeOptions:
    """helicone_options() of `headers`, which must be case-insensitive (aiohttp's are)."""
    return helicone_options(scan_headers(headers))


def with_upstream_key(scanned: RequestHeaders, upstream_key: str | None) -> dict[str, str]:
    """The headers to send upstream: the scanned ones, the key added if the client sent none."""
    out = dict(scanned.upstream)
    if upstream_key and not scanned.has_authorization:
        out["Authorization"] = f"Bearer {upstream_key}"
    # relaylog logs decoded bodies; ask the upstream for them uncompressed.
    out["Accept-Encoding"] = "identity"
    return out


def upstream_request_headers(
    headers: Mapping[str, str], upstream_key: str | None
) -> dict[str, str]:
    """The headers to send upstream: hop-by-hop and `Helicone-*` removed, key added if absent."""
    return with_upstream_key(scan_headers(headers), upstream_key)


def connection_named(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names listed in `Connection:`, hop-by-hop for this connection only (RFC 9110)."""
    values = [v for k, v in headers.items() if k.lower() == "connection"]
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def client_response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream response headers to pass to the client (hop-by-hop removed)."""
    named = connection_named(headers)
    return {
        name: value
        for name, value in headers.items()
        if name.lower() not in HOP_BY_HOP
        and name.lower() not in RECOMPUTED_RESPONSE
        and name.lower() not in named
    }


def loggable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Request headers as stored: credentials removed, names lowercased."""
    return scan_headers(headers).logged
