"""Helicone header parsing and header policy: pure functions, no sockets."""

from __future__ import annotations

import re
import uuid
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


def is_valid_request_id(value: str) -> bool:
    """True when `value` may be used verbatim as a request id."""
    return REQUEST_ID_RE.fullmatch(value) is not None


def new_request_id() -> str:
    return str(uuid.uuid4())


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


def parse_helicone(headers: Mapping[str, str]) -> HeliconeOptions:
    """Read every `Helicone-*` header the proxy honours; raise HeaderError on bad input.

    `headers` must be case-insensitive (aiohttp's CIMultiDictProxy is).
    """
    raw_id = headers.get("helicone-request-id")
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
    for name, value in headers.items():
        lowered = name.lower()
        if not lowered.startswith(PROPERTY_PREFIX):
            continue
        key = lowered[len(PROPERTY_PREFIX) :]
        if not key:
            raise HeaderError("Helicone-Property- needs a name after the prefix", name)
        if len(_utf8(name, value)) > MAX_PROPERTY_BYTES:
            raise HeaderError(f"{name} is larger than {MAX_PROPERTY_BYTES} bytes", name)
        properties[key] = value
        if len(properties) > MAX_PROPERTIES:
            raise HeaderError(f"at most {MAX_PROPERTIES} Helicone-Property-* headers", name)
    session_path = _text(headers, "helicone-session-path")
    if session_path is not None and not session_path.startswith("/"):
        session_path = "/" + session_path
    return HeliconeOptions(
        request_id=request_id,
        properties=properties,
        user_id=_text(headers, "helicone-user-id"),
        session_id=_text(headers, "helicone-session-id"),
        session_path=session_path,
        session_name=_text(headers, "helicone-session-name"),
        omit_request=_flag(headers, "helicone-omit-request"),
        omit_response=_flag(headers, "helicone-omit-response"),
        stream_usage=_flag(headers, "helicone-stream-usage"),
        auth=headers.get("helicone-auth"),
    )


def connection_named(headers: Mapping[str, str]) -> frozenset[str]:
    """Header names listed in `Connection:`, hop-by-hop for this connection only (RFC 9110)."""
    values = [v for k, v in headers.items() if k.lower() == "connection"]
    return frozenset(t.strip().lower() for v in values for t in v.split(",") if t.strip())


def upstream_request_headers(
    headers: Mapping[str, str], upstream_key: str | None
) -> dict[str, str]:
    """The headers to send upstream: hop-by-hop and `Helicone-*` removed, key added if absent."""
    out: dict[str, str] = {}
    named = connection_named(headers)
    for name, value in headers.items():
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP
            or lowered in RECOMPUTED_REQUEST
            or lowered in named
            or lowered.startswith("helicone-")
        ):
            continue
        out[name] = value
    if upstream_key and "authorization" not in {k.lower() for k in out}:
        out["Authorization"] = f"Bearer {upstream_key}"
    # relaylog logs decoded bodies; ask the upstream for them uncompressed.
    out["Accept-Encoding"] = "identity"
    return out


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
    return {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in CREDENTIAL_HEADERS
    }
